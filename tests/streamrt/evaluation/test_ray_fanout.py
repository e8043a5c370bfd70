"""``eval run --ray``: rows fanned out over a local Ray cluster give the local run's outputs."""

import functools

import numpy as np
import pytest
import soundfile as sf

from streamrt.clock import ManualClock
from streamrt.errors import ConfigError
from streamrt.evaluation import evaluate_streaming
from streamrt.evaluation.ray_fanout import RayWorkers, evaluate_on_ray, streaming_job
from streamrt.testing import CountingModel

pytestmark = pytest.mark.ray


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(1)
    lines = ["id\taudio\treference"]
    for k, seconds in enumerate((2.0, 0.7, 3.1, 1.2, 2.6)):
        sf.write(tmp_path / f"a{k}.wav", rng.uniform(-0.1, 0.1, int(16000 * seconds)).astype(np.float32), 16000)
        lines.append(f"u{k}\ta{k}.wav\tw0 w1 w2")
        if k == 2:
            lines.append("gone\tmissing.wav\tx")  # a row error in the middle keeps its place
    lines.append("short\tonly-two-columns")
    (tmp_path / "data.tsv").write_text("\n".join(lines) + "\n")
    return tmp_path / "data.tsv"


def test_rows_on_two_workers_merge_into_the_local_result(ray_cluster, dataset):
    model_kw = dict(word_ms=500, chunk_ms=200, hold_ms=300)
    local = evaluate_streaming(CountingModel(**model_kw), dataset, options={}, feed_ms=200, clock=ManualClock())
    seen = []
    job = streaming_job(functools.partial(CountingModel, **model_kw), options={}, feed_ms=200, clock=ManualClock)
    remote, describe = evaluate_on_ray(job, dataset, streaming=True, cluster=RayWorkers(workers=2, cpus_per_worker=0.5),
                                       progress=lambda rid, done, total: seen.append((done, total)))
    assert [u.id for u in local.utterances] == ["u0", "u1", "u2", "u3", "u4"]
    assert remote.utterances == local.utterances  # predictions, delays, elapsed, in data order
    assert remote.instances == local.instances
    assert remote.errors == local.errors and len(remote.errors) == 2
    assert remote.scores == local.scores
    assert describe["ray"]["workers"] == 2
    assert seen[-1] == (6, 6) and len(seen) == 6


def test_bad_worker_counts_name_the_setting():
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        RayWorkers(workers=0)
    with pytest.raises(ConfigError, match="cpus_per_worker must be > 0"):
        RayWorkers(cpus_per_worker=0)
