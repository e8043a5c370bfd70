"""``streamrt eval run --ray``: a data set's rows fanned out over a Ray cluster.

Each worker is a Ray actor that loads the model once (``make_run()`` is called in the actor, so the
weights never travel) and then runs rows one at a time, exactly as ``evaluate_streaming`` /
``evaluate_offline`` run them locally: same ``Session``, same feed size, same clock kind (each
actor reads its own clock). The driver reads the data file and the audio, keeps ``workers`` rows in
flight, and merges the outcomes in data order through ``runner.collect_outcomes``, so the outputs
(instances.log, scores.json) have the same rows, in the same order, as a local run. Predictions and
delays are as deterministic as the local run's (same model, same ``--threads``); elapsed and RTF are
measured on whichever machine ran the row.

Audio goes from the driver to the actor with the row, so worker machines need no shared file system.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

from streamrt.clock import Clock, MonotonicClock
from streamrt.engine import Describable
from streamrt.errors import ConfigError, DataError
from streamrt.evaluation.data import DataRow, load_row_audio, read_data
from streamrt.evaluation.runner import (SAMPLE_RATE, EvalResult, Progress, RowRun, Utterance, collect_outcomes,
                                        offline_run, run_row, streaming_run)

MakeRun = Callable[[], tuple[RowRun, dict[str, Any]]]
"""Called once in each worker: loads the model, returns (the row function, the model's describe())."""


@dataclass(frozen=True)
class RayWorkers:
    """Where and how wide to fan out.

    address: a running cluster (``ray://host:10001``, ``auto``), or None: the cluster named by the
        ``RAY_ADDRESS`` environment variable, else a local one started for this run.
    workers: actors (each holds one copy of the model); None: as many as the cluster's CPUs allow
        at ``cpus_per_worker`` each (at least 1).
    cpus_per_worker: CPUs Ray reserves for each actor (Ray's ``num_cpus``); also the torch threads
        of each actor unless ``threads`` is set.
    threads: torch CPU threads per actor (None: ``cpus_per_worker``, rounded up).
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1 or None, got {self.workers}")
        if self.cpus_per_worker <= 0:
            raise ConfigError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker}")


def streaming_job(load_model: Callable[[], Any], *, options: dict[str, Any], feed_ms: int,
                  clock: Callable[[], Clock] = MonotonicClock) -> MakeRun:
    """A ``MakeRun`` for streaming rows: ``load_model()`` runs in each worker (pass something
    importable there, e.g. ``functools.partial(streamrt.presets.load_model, name, config)``)."""
    return partial(_make_streaming, load_model, dict(options), feed_ms, clock)


def offline_job(model: str, *, task: str, language: str | None, clock: Callable[[], Clock] = MonotonicClock) -> MakeRun:
    """A ``MakeRun`` for the offline reference (``transcribe_offline`` on each whole file)."""
    return partial(_make_offline, model, task, language, clock)


def _make_streaming(load_model, options, feed_ms, clock) -> tuple[RowRun, dict[str, Any]]:
    model = load_model()
    describe = model.describe() if isinstance(model, Describable) else {}
    return streaming_run(model, options=options, feed_ms=feed_ms, clock=clock()), describe


def _make_offline(model, task, language, clock) -> tuple[RowRun, dict[str, Any]]:
    from streamrt.models.whisper import load_whisper, transcribe_offline

    bundle = load_whisper(model)

    def transcribe(audio, row):
        return transcribe_offline(bundle, audio, task=task, language=row.language or language)

    return offline_run(transcribe, clock=clock()), {"model": model, "mode": "offline"}


class RowWorker:
    """One model, many rows (a Ray actor; ``ray.remote`` is applied in ``evaluate_on_ray``)."""

    def __init__(self, make_run: MakeRun, threads: int | None):
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self._run, self._describe = make_run()

    def describe(self) -> dict[str, Any]:
        return self._describe

    def run(self, data_path: str, row: DataRow, audio) -> Utterance | str:
        return run_row(data_path, row, self._run, audio)


def ensure_ray(address: str | None):
    """Connect to ``address`` (or RAY_ADDRESS, or start a local cluster) unless already connected."""
    try:
        import ray
    except ImportError:
        raise ConfigError("Ray is not installed: pip install 'streamrt[ray]' (or run without --ray)") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    return ray


def evaluate_on_ray(
    make_run: MakeRun,
    data_path: str | Path,
    *,
    streaming: bool,
    cluster: RayWorkers = RayWorkers(),
    limit: int | None = None,
    progress: Progress | None = None,
) -> tuple[EvalResult, dict[str, Any]]:
    """Run every usable row on Ray workers; returns (the merged result, the model's describe())."""
    rows, row_errors = read_data(data_path)
    rows = rows[:limit] if limit is not None else rows
    ray = ensure_ray(cluster.address)
    n = cluster.workers or max(1, int(ray.cluster_resources().get("CPU", 1) // cluster.cpus_per_worker))
    n = max(1, min(n, len(rows)))
    threads = cluster.threads or max(1, round(cluster.cpus_per_worker + 0.499))
    actor_cls = ray.remote(num_cpus=cluster.cpus_per_worker)(RowWorker)
    actors = [actor_cls.remote(make_run, threads) for _ in range(n)]
    try:
        describe = ray.get(actors[0].describe.remote())
        outcomes = _fan_out(ray, actors, str(data_path), rows, progress)
    finally:
        for a in actors:
            ray.kill(a)
    result = collect_outcomes(zip(rows, outcomes), [e.message for e in row_errors], streaming=streaming)
    return result, {**describe, "ray": {"workers": n, "cpus_per_worker": cluster.cpus_per_worker,
                                        "threads": threads}}


def _fan_out(ray, actors: list, data_path: str, rows: list[DataRow], progress: Progress | None) -> list:
    """Keep one row in flight per actor; outcomes come back indexed by row, so order is the data's."""
    outcomes: list[Utterance | str | None] = [None] * len(rows)
    idle = list(actors)
    in_flight: dict[Any, tuple[int, Any]] = {}  # ObjectRef -> (row index, actor)
    next_row = done = 0
    while done < len(rows):
        while idle and next_row < len(rows):
            k, row = next_row, rows[next_row]
            next_row += 1
            try:
                audio = load_row_audio(data_path, row, SAMPLE_RATE)  # read here: workers need no shared disk
            except DataError as e:
                outcomes[k] = e.message
                done += 1
                if progress:
                    progress(row.id, done, len(rows))
                continue
            actor = idle.pop()
            in_flight[actor.run.remote(data_path, row, audio)] = (k, actor)
        if not in_flight:
            continue
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        k, actor = in_flight.pop(ready[0])
        outcomes[k] = ray.get(ready[0])  # a worker's crash (not a StreamrtError) raises here, as locally
        idle.append(actor)
        done += 1
        if progress:
            progress(rows[k].id, done, len(rows))
    return outcomes
