"""The host probe the streams benchmark records next to its figures."""

import torch

from streamrt.bench.host import host_speed


def test_host_speed_measures_both_figures_and_restores_the_thread_count():
    before = torch.get_num_threads()
    speed = host_speed(threads=1)
    assert speed["matmul_gflops"] > 0 and speed["copy_gb_s"] > 0
    assert torch.get_num_threads() == before
