from pathlib import Path

from streamrt.cli import bench


def test_bench_all_runs_only_what_exists_in_the_repo():
    # every file an ALL_RUNS entry names must exist, or `make bench` fails half way through
    root = Path(__file__).resolve().parents[2]
    for _name, args in bench.ALL_RUNS:
        for a in args:
            if a.endswith((".tsv", ".yaml")):
                assert (root / a).is_file(), a


def test_bench_all_names_every_benchmark_command():
    commands = {args[1] for _n, args in bench.ALL_RUNS if args[0] == "bench"}
    assert commands == {"encoder", "quant", "streams", "quant-wer", "llm", "llm-quality", "llm-beside-asr", "soak", "lips", "tts"}


def test_capacity_sweeps_measure_each_configuration_as_set():
    # a sweep with the ladder on would count a trial that only held by lengthening its chunks
    sweeps = [args for _n, args in bench.ALL_RUNS if "--sweep" in args]
    assert len(sweeps) == 7 and all("--no-degrade" in args for args in sweeps)
    spikes = {n: args for n, args in bench.ALL_RUNS if "--spike-at" in args}
    assert ["--no-degrade" in args for _n, args in sorted(spikes.items())] == [True, False]
