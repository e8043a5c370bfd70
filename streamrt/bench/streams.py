"""N concurrent real-time streams through one Scheduler: the capacity benchmark (issue 6).

Not a test: it runs on the wall clock and prints figures. Each stream is a ``Session`` fed chunk by
chunk at real-time pace by its own asyncio task (streams start at staggered phases, as clients do),
all served by one ``Scheduler`` over one shared model:

    result = asyncio.run(run_streams(model, n_streams=32, duration_s=30, audio=samples_16k))
    best = asyncio.run(sweep_streams(model, duration_s=30, audio=samples_16k))

``run_streams`` returns the output contract of ``streamrt bench streams --format json``: ``streams``,
``kept_realtime``, ``p50_commit_delay_ms``, ``p95_commit_delay_ms`` (a word's end in the audio to its
commit reaching the session's callback, wall clock), ``rtf_max``, plus scheduler figures.
A stream kept real time when its compute stayed under its audio time (rtf < 1) and its lag (how
long a ready step waited to start, see streamrt/scheduler/member.py) never passed ``max_lag_ms``.
With ``cameras`` (``--video-fps``; ``streamrt.bench.streams_video``) every session also streams a
camera's frames, scored on the same scheduler; a stream is then held only when its video kept up too.
``run_spike`` measures a load spike (the stream count doubling for a while).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from streamrt.bench.host import host_speed
from streamrt.clock import MonotonicClock
from streamrt.bench.simulated_compute import SimulatedCompute
from streamrt.bench.stream_records import StreamRecord, loop_audio, summarize
from streamrt.engine import Describable, StreamingModel
from streamrt.presets import DEFAULT_PRESET, get_preset
from streamrt.quant.precision import detect_cpu
from streamrt.scheduler import Scheduler, SchedulerSettings
from streamrt.session import Session, SessionLimits

if TYPE_CHECKING:
    from streamrt.bench.streams_video import CameraRun, Cameras


async def _run_plan(
    model: StreamingModel,
    plan: Sequence[tuple[float, float]],
    audio: np.ndarray,
    *,
    chunk_ms: float,
    options: Mapping[str, object] | None,
    settings: SchedulerSettings,
    cameras: Cameras | None = None,
) -> tuple[list[StreamRecord], dict, float, CameraRun | None]:
    """Client i joins at plan[i][0] s and streams plan[i][1] s of audio in real time, then eof;
    with ``cameras``, its camera's frames alongside (``streamrt.bench.streams_video``)."""
    clock = MonotonicClock()
    sched = Scheduler(model, clock=clock, settings=settings)
    cams = cameras.start(sched, clock) if cameras is not None else None
    sr = model.sample_rate
    chunk = max(1, int(chunk_ms * sr / 1000))
    limits = SessionLimits(max_buffered_audio_s=None)

    def on_output(session: Session, rec: StreamRecord) -> None:
        rec.take_events(sched.session_stats(session), clock.now())

    async def client(i: int, rec: StreamRecord, start_s: float, duration_s: float) -> None:
        n_samples = int(duration_s * sr)
        samples = loop_audio(audio, n_samples, (i * 7919 * sr // 10) % max(len(audio), 1))
        await asyncio.sleep(start_s)
        rec.start = clock.now()
        sched.add(rec.session, on_output=lambda s: on_output(s, rec))
        camera = asyncio.create_task(cams.feed(rec.session, rec.start, duration_s)) if cams else None
        for a in range(0, n_samples, chunk):
            piece = samples[a : a + chunk]
            due = rec.start + (a + len(piece)) / sr  # the piece is complete when its last sample is
            delay = due - clock.now()
            if delay > 0:
                await asyncio.sleep(delay)
            rec.session.receive_audio(piece)
            sched.wake(rec.session)
        if camera is not None:
            await camera
        rec.session.receive_eof()
        sched.wake(rec.session)
        await rec.ended.wait()

    records = [
        StreamRecord(Session(model.create_stream(options), clock, model_sample_rate=sr,
                              input_sample_rate=sr, limits=limits, session_id=f"bench{i}",
                              video=cams.open(f"bench{i}") if cams else None))
        for i in range(len(plan))
    ]
    await sched.start()
    t0 = time.perf_counter()
    await asyncio.gather(*(client(i, r, *plan[i]) for i, r in enumerate(records)))
    wall_s = time.perf_counter() - t0
    stats = sched.stats()
    await sched.stop()
    return records, stats, wall_s, cams


async def run_streams(
    model: StreamingModel,
    n_streams: int,
    duration_s: float,
    audio: np.ndarray,
    *,
    chunk_ms: float = 100.0,
    options: Mapping[str, object] | None = None,
    settings: SchedulerSettings | None = None,
    max_lag_ms: float | None = None,
    per_stream: bool = False,
    cameras: Cameras | None = None,
) -> dict:
    """Run ``n_streams`` simulated clients for ``duration_s`` seconds of ``audio`` each (16 kHz mono
    float32 at ``model.sample_rate``, looped; stream i starts at a different offset) and measure.

    chunk_ms: how much audio a client sends per message (ms). options: passed to
    ``model.create_stream``. max_lag_ms: the lag a stream may reach and still count as real time
    (ms; default: the scheduler's latency budget). per_stream: include per-stream figures.
    cameras: every session also gets a camera (``streamrt.bench.streams_video``); a stream is then
    held only when its audio and its video both kept up, and the result has ``video``.
    """
    settings = settings or SchedulerSettings()
    max_lag_ms = settings.latency_budget_ms if max_lag_ms is None else max_lag_ms
    stagger_s = chunk_ms / 1000.0 / max(n_streams, 1)  # clients start at different phases
    plan = [(i * stagger_s, duration_s) for i in range(n_streams)]
    records, stats, wall_s, cams = await _run_plan(model, plan, audio, chunk_ms=chunk_ms, options=options,
                                                   settings=settings, cameras=cameras)
    return summarize(records, stats, n_streams, duration_s, wall_s, max_lag_ms, per_stream, cams)


async def run_spike(
    model: StreamingModel,
    base_streams: int,
    duration_s: float,
    audio: np.ndarray,
    *,
    spike_streams: int | None = None,
    spike_start_s: float = 10.0,
    spike_duration_s: float = 30.0,
    chunk_ms: float = 100.0,
    options: Mapping[str, object] | None = None,
    settings: SchedulerSettings | None = None,
    max_lag_ms: float | None = None,
    cameras: Cameras | None = None,
) -> dict:
    """A load spike: ``base_streams`` for ``duration_s``, plus ``spike_streams`` (default: as many
    again, doubling the load) joining at ``spike_start_s`` for ``spike_duration_s``. Reports the
    run as ``run_streams`` does, the base streams on their own (did they hold their deadlines
    through the spike?), and the degradation level history. ``cameras``: as in ``run_streams``."""
    settings = settings or SchedulerSettings()
    max_lag_ms = settings.latency_budget_ms if max_lag_ms is None else max_lag_ms
    spike_streams = base_streams if spike_streams is None else spike_streams
    stagger_s = chunk_ms / 1000.0 / max(base_streams + spike_streams, 1)
    plan = [(i * stagger_s, duration_s) for i in range(base_streams)]
    plan += [(spike_start_s + i * stagger_s, spike_duration_s) for i in range(spike_streams)]
    records, stats, wall_s, cams = await _run_plan(model, plan, audio, chunk_ms=chunk_ms, options=options,
                                                   settings=settings, cameras=cameras)
    out = summarize(records, stats, len(plan), duration_s, wall_s, max_lag_ms, False, cams)
    base = summarize(records[:base_streams], stats, base_streams, duration_s, wall_s, max_lag_ms, False, cams)
    out["base"] = {k: base[k] for k in ("streams", "kept_realtime", "streams_kept_realtime", "p50_commit_delay_ms",
                                        "p95_commit_delay_ms", "max_lag_ms", "video") if k in base}
    out["spike"] = {"streams": spike_streams, "start_s": spike_start_s, "duration_s": spike_duration_s}
    out["degradation_history"] = stats["degradation"]["history"]
    out["degradation_max_level"] = max((lvl for _, lvl in stats["degradation"]["history"]), default=0)
    return out


def passes(result: dict, p95_limit_ms: float) -> bool:
    p95 = result["p95_commit_delay_ms"]
    return bool(result["kept_realtime"]) and p95 is not None and p95 <= p95_limit_ms


async def sweep_streams(
    model: StreamingModel,
    duration_s: float,
    audio: np.ndarray,
    *,
    start: int = 1,
    max_streams: int = 256,
    p95_limit_ms: float = 1500.0,
    counts: Sequence[int] | None = None,
    probe: Callable[[], dict] | None = None,
    **run_kw,
) -> dict:
    """The most streams held in real time with p95 commit delay <= ``p95_limit_ms``.

    Doubles from ``start`` until a run fails (or ``max_streams``), then bisects between the last
    pass and the first failure. ``counts``: try exactly these instead. Every run is in ``trials``.
    ``probe``: called before each trial (e.g. ``host_speed``); its result is the trial's
    ``host_speed``, so that each trial reads against what the host gave at that moment (on a
    shared host that moves by 2x within minutes, and one sweep takes about ten).
    """
    trials: dict[int, dict] = {}

    async def trial(n: int) -> bool:
        if n not in trials:
            speed = probe() if probe is not None else None
            trials[n] = await run_streams(model, n, duration_s, audio, **run_kw)
            if speed is not None:
                trials[n]["host_speed"] = speed
        return passes(trials[n], p95_limit_ms)

    best = 0
    if counts is not None:
        for n in counts:
            if await trial(n):
                best = max(best, n)
    else:
        n, fail = start, max_streams + 1
        while n <= max_streams:
            if not await trial(n):
                fail = n
                break
            best = n
            n *= 2
        lo, hi = best, fail  # lo passed (or 0), hi failed (or past max_streams)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if await trial(mid):
                lo = best = mid
            else:
                hi = mid
    return {
        "max_streams": best,
        "p95_limit_ms": p95_limit_ms,
        "duration_s": duration_s,
        "trials": [trials[n] for n in sorted(trials)],
    }


# ---- command-line entry (`streamrt bench streams`, or `python -m streamrt.bench.streams`) ---------
def default_audio_path() -> str:
    """A real English recording that ships with an installed package (moonshine-voice, 44 s)."""
    from importlib.util import find_spec

    spec = find_spec("moonshine_voice")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("no default audio: install moonshine-voice (the [models] extra) or pass --audio")
    import os

    return os.path.join(list(spec.submodule_search_locations)[0], "assets", "two_cities.wav")


def load_bench_model(name: str, **model_settings):
    """``counting`` (CountingModel), ``counting-sim:FIXED_MS:PER_STREAM_MS[:PRECISION_SPEEDUP]``
    (CountingModel with a simulated step cost, and optionally a simulated precision knob), or a
    Whisper name/path configured by ``model_settings["preset"]`` (a ``streamrt.presets`` name or
    ``Preset``; the default preset if absent)."""
    from streamrt.testing import CountingModel

    if name == "counting":
        return CountingModel()
    if name.startswith("counting-sim"):
        parts = name.split(":")
        fixed = float(parts[1]) if len(parts) > 1 else 20.0
        per = float(parts[2]) if len(parts) > 2 else 2.0
        speedup = float(parts[3]) if len(parts) > 3 else None
        return SimulatedCompute(CountingModel(), fixed, per, precision_speedup=speedup)
    from streamrt.presets import load_model

    return load_model(name, model_settings.pop("preset", DEFAULT_PRESET), **model_settings)


def bench_streams(
    model_name: str = "tiny.en",
    streams: int = 8,
    duration_s: float = 30.0,
    *,
    sweep: bool = False,
    spike: tuple[float, float] | None = None,
    audio_path: str | None = None,
    chunk_ms: float = 100.0,
    p95_limit_ms: float = 1500.0,
    max_streams: int = 256,
    options: Mapping[str, object] | None = None,
    settings: SchedulerSettings | None = None,
    model_options: Mapping[str, object] | None = None,
    video_fps: float | None = None,
    **model_settings,
) -> dict:
    """Load the model and audio, then run ``streams`` streams, or sweep, or (``spike`` = (start_s,
    duration_s)) double the streams for a while; the JSON-ready result. ``video_fps``: every
    session also gets a camera at that rate (None or 0: none; ``streamrt.bench.streams_video``)."""
    from streamrt.audio import load_audio
    from streamrt.bench.streams_video import Cameras, check_video_fps

    video_fps = check_video_fps(video_fps)  # before anything loads
    model = load_bench_model(model_name, **{**dict(model_options or {}), **model_settings})
    audio = load_audio(audio_path or default_audio_path(), model.sample_rate)
    cameras = Cameras.astronaut(video_fps) if video_fps else None
    kw = dict(chunk_ms=chunk_ms, options=options, settings=settings, cameras=cameras)
    # a short run first, not reported: a process's first steps (kernels built, a FaceMesh graph
    # loaded) cost what a running server no longer pays, and would fail the first trial with a camera
    warmup_s = min(2.0, duration_s)
    asyncio.run(run_streams(model, 1, warmup_s, audio, **kw))
    speed_start = host_speed()
    if spike is not None:
        out = asyncio.run(run_spike(model, streams, duration_s, audio, spike_start_s=spike[0],
                                    spike_duration_s=spike[1], **kw))
    elif sweep:
        out = asyncio.run(sweep_streams(model, duration_s, audio, start=max(1, streams),
                                        max_streams=max_streams, p95_limit_ms=p95_limit_ms, probe=host_speed,
                                        **kw))
    else:
        out = asyncio.run(run_streams(model, streams, duration_s, audio, **kw))
    described = model.describe() if isinstance(model, Describable) else {}
    import os

    load = [round(x, 2) for x in os.getloadavg()]
    return {"model": model_name, "preset": described.get("preset"), "precision": described.get("precision"),
            "precision_reason": described.get("precision_reason"), "cpu_capability": detect_cpu().label,
            **out, "warmup_s": warmup_s, "model_settings": described,
            "stream_options": dict(options or {}), "load_average_end": load,
            "host_speed_start": speed_start, "host_speed_end": host_speed()}


def register(app) -> None:
    """Add ``streams`` to the ``streamrt bench`` typer app (called from streamrt/cli/bench.py)."""
    import json

    import typer

    @app.command("streams")
    def streams_cmd(
        model: str = typer.Option("tiny.en", help="Whisper name/path, or counting / counting-sim:FIXED_MS:PER_STREAM_MS"),
        streams: int = typer.Option(8, help="concurrent real-time streams (the sweep's first count)"),
        duration: float = typer.Option(30.0, help="seconds of audio per stream"),
        sweep: bool = typer.Option(False, help="find the most streams held in real time with p95 <= --p95-limit-ms"),
        p95_limit_ms: float = typer.Option(1500.0, help="sweep criterion: p95 commit delay (ms)"),
        max_streams: int = typer.Option(256, help="sweep: the most streams tried (streams)"),
        spike_at: float = typer.Option(None, help="load spike: as many streams again join at this second"),
        spike_duration: float = typer.Option(30.0, help="load spike: seconds the extra streams stay"),
        degrade: bool = typer.Option(True, help="let the scheduler degrade under overload"),
        audio: str = typer.Option(None, help="16 kHz-resampled input audio (default: a packaged recording)"),
        chunk_ms: float = typer.Option(100.0, help="client message size (ms)"),
        preset: str = typer.Option(DEFAULT_PRESET, help="Whisper only: named configuration, as served "
                                   "(`streamrt presets`); the options below override its fields"),
        encoder_mode: str = typer.Option(None, help="Whisper only: block-lookahead | block-causal | sliding | reencode"),
        model_chunk_ms: int = typer.Option(None, help="Whisper only: audio per model step (ms)"),
        policy: str = typer.Option(None, help="Whisper only: read/write policy"),
        policy_options: str = typer.Option(None, help="Whisper only: policy options as JSON, e.g. '{\"n\": 2}'"),
        quantize: str = typer.Option(None, help="Whisper only: precision: auto (by this CPU), fp32, bf16, int8-dynamic, ..., flexiq"),
        model_settings: str = typer.Option(None, help="Whisper only: more WhisperStreamSettings as JSON "
                                           "(encoder_settings: the encoder's, as a nested object)"),
        threads: int = typer.Option(None, help="torch threads in this process (default: torch's)"),
        max_batch_size: int = typer.Option(None, help="scheduler: most streams per step (default 64)"),
        max_wait_ms: float = typer.Option(None, help="scheduler: gather window after the first ready stream (ms, default 10)"),
        video_fps: float = typer.Option(None, help="every session also gets a camera (the animated astronaut, "
                                        "JPEG as a WebSocket client sends it) at this many frames/s, scored by "
                                        "FaceMesh + the lip rule on the same scheduler (the video extra); 0: off"),
        format: str = typer.Option("json", "--format", help="json | text"),
    ) -> None:
        """N concurrent simulated real-time streams through one scheduler (issue 6's benchmark)."""
        from streamrt.bench.streams_video import check_video_fps
        from streamrt.errors import ModelLoadError, StreamrtError

        try:
            check_video_fps(video_fps)
        except StreamrtError as e:
            raise typer.BadParameter(e.message, param_hint="--video-fps") from None
        if threads is not None:
            import torch

            torch.set_num_threads(threads)  # this benchmark process only
        model_kw: dict = {}
        options = None
        if not model.startswith("counting"):
            more = json.loads(model_settings) if model_settings else {}
            config = get_preset(preset).with_overrides(
                encoder_mode=encoder_mode, chunk_ms=model_chunk_ms, policy=policy,
                policy_options=json.loads(policy_options) if policy_options else None,
                encoder_settings=more.pop("encoder_settings", None), settings=more, quantize=quantize)
            model_kw["preset"] = config
            options = {"policy": config.policy, "policy_options": dict(config.policy_options)}
        sched_kw: dict = {} if degrade else {"degrade_high_water_ms": None}
        if max_batch_size is not None:
            sched_kw["max_batch_size"] = max_batch_size
        if max_wait_ms is not None:
            sched_kw["max_wait_ms"] = max_wait_ms
        settings = SchedulerSettings(**sched_kw) if sched_kw else None
        spike = None if spike_at is None else (spike_at, spike_duration)
        try:
            out = bench_streams(model, streams, duration, sweep=sweep, spike=spike, audio_path=audio,
                                chunk_ms=chunk_ms, p95_limit_ms=p95_limit_ms, max_streams=max_streams,
                                options=options, settings=settings, model_options=model_kw, video_fps=video_fps)
        except ModelLoadError as e:  # e.g. --video-fps without the video extra
            raise typer.BadParameter(e.message) from None
        if format == "json":
            typer.echo(json.dumps(out))
        else:
            for k, v in out.items():
                if k == "video":
                    for vk, vv in v.items():
                        typer.echo(f"video.{vk}: {vv}")
                elif k not in ("trials", "per_stream"):
                    typer.echo(f"{k}: {v}")


if __name__ == "__main__":
    import typer as _typer

    _app = _typer.Typer(add_completion=False)
    register(_app)
    _app()
