"""``streamrt bench lips``: lip-activity detection against the animated photo's known truth, the
cost per frame, and how many camera streams one machine holds.

Detection: the ``TalkingFace`` clip (``streamrt.bench.talking_face``, a real photo whose mouth is
warped open and shut on a schedule) goes through the real FaceMesh and the lip-activity task,
frame by frame; each frame's state is compared with the schedule's truth. Precision and recall
count frames with a known truth and a known state (talk = positive); ``unknown`` frames are
reported apart (on no-face frames unknown is the right answer). Onset delay: for each ``talk``
segment, the first active frame's time minus the segment's start (ms of media).

Capacity: ``streams`` sessions at ``fps`` each share one ``LipActivityModel``; frames are fed in
real-time order and every model step is timed (process CPU time as well as wall time). One
scheduler runs its steps on one worker thread, so it holds ``1 / (wall seconds per second of video
per stream)`` streams; a machine, ``cores / (CPU seconds per ...)`` (one scheduler per core, e.g. as
replicas). Both leave nothing for the speech models: take them as the video share of the budget.

Real time (``--realtime 4,8,12``): that many cameras at ``--realtime-fps`` through a real ``Scheduler`` for
``seconds``, each frame handed over at its wall-clock time; per frame, the time from hand-over to
its score (p50/p95), and the frames dropped because the model fell ``max_pending_frames`` behind.
A count holds when p95 stays within ``frame_budget_ms`` and nothing is dropped.

Sensitivity (``--sweep-window 250,400 --sweep-std 0.01,0.015``): the rule's two settings over a
grid, on landmarks computed once per clip by the real FaceMesh and replayed (the rule alone
changes), so the defaults can be judged against their neighbours. It tunes on the animation itself:
read it as sensitivity, not as a held-out score.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from streamrt.bench.talking_face import DEFAULT_SCHEDULE, Segment, TalkingFace
from streamrt.tasks.lips import LipActivityModel, LipActivitySettings
from streamrt.types import LipActivity, VideoFrame


@dataclass(frozen=True)
class Detection:
    fps: float
    frames: int
    precision: float
    recall: float
    onset_delays_ms: tuple[float | None, ...]  # per talk segment; None: never detected
    unknown_on_no_face: float  # fraction of no-face frames scored unknown
    unknown_on_face: float  # fraction of face frames scored unknown (a missed face, or warm-up)
    dropped: float  # fraction of frames with no score (dropped as late or too fast)

    def to_json(self) -> dict:
        return {"fps": self.fps, "frames": self.frames, "precision": round(self.precision, 3),
                "recall": round(self.recall, 3),
                "onset_delay_ms": [None if d is None else round(d, 1) for d in self.onset_delays_ms],
                "unknown_on_no_face": round(self.unknown_on_no_face, 3),
                "unknown_on_face": round(self.unknown_on_face, 3), "dropped": round(self.dropped, 3)}


def score_clip(model: LipActivityModel, clip) -> list[LipActivity]:
    """Every frame of ``clip`` ([(time_ms, rgb, truth)]) through one stream, one step per frame."""
    stream = model.create_stream()
    out: list[LipActivity] = []
    for t, rgb, _ in clip:
        stream.accept(VideoFrame(rgb, t))
        model.step([stream])
        out += stream.pop_result().lips
    stream.input_finished()
    return out


def detection(clip, lips: list[LipActivity], fps: float, schedule: tuple[Segment, ...] = DEFAULT_SCHEDULE) -> Detection:
    by_time = {a.time_ms: a for a in lips}
    tp = fp = fn = 0
    no_face = no_face_unknown = face = face_unknown = dropped = 0
    for t, _, truth in clip:
        a = by_time.get(t)
        if a is None:
            dropped += 1
            continue
        state = a.active
        if truth is None:
            no_face += 1
            no_face_unknown += state is None
            continue
        face += 1
        if state is None:
            face_unknown += 1
        elif state and truth:
            tp += 1
        elif state:
            fp += 1
        elif truth:
            fn += 1
    onsets = []
    for start, end, kind in schedule:
        if kind != "talk":
            continue
        hit = next((a.time_ms for a in lips if start <= a.time_ms < end and a.active), None)
        onsets.append(None if hit is None else hit - start)
    return Detection(fps, len(clip), tp / max(tp + fp, 1), tp / max(tp + fn, 1), tuple(onsets),
                     no_face_unknown / max(no_face, 1), face_unknown / max(face, 1), dropped / max(len(clip), 1))


def capacity(model: LipActivityModel, face: TalkingFace, streams: int, fps: float, seconds: float) -> dict:
    """``streams`` cameras at ``fps`` for ``seconds`` of video through one shared model, one batched
    step per frame tick; CPU and wall seconds per second of video per stream."""
    schedule = ((0.0, seconds * 1000.0, "talk"),)
    clip = face.render(schedule, fps)
    ss = [model.create_stream() for _ in range(streams)]
    t0w = time.perf_counter()  # the first frame apart: each stream's tracker opens at its first step
    for s in ss:
        s.accept(VideoFrame(clip[0][1], clip[0][0]))
    model.step(ss)
    open_s = time.perf_counter() - t0w
    t0w, t0c = time.perf_counter(), time.process_time()
    for t, rgb, _ in clip[1:]:
        for s in ss:
            s.accept(VideoFrame(rgb, t))
        model.step(ss)
        for s in ss:
            s.pop_result()
    wall, cpu = time.perf_counter() - t0w, time.process_time() - t0c
    frames = streams * (len(clip) - 1)
    for s in ss:
        s.cancel()
    video_s = (len(clip) - 1) / fps
    return {"streams": streams, "fps": fps, "frames": frames, "first_frame_s_all_streams": round(open_s, 3),
            "wall_ms_per_frame": round(1000 * wall / frames, 2), "cpu_ms_per_frame": round(1000 * cpu / frames, 2),
            "cpu_s_per_video_s_per_stream": round(cpu / video_s / streams, 4),
            "wall_s_per_video_s_per_stream": round(wall / video_s / streams, 4)}


async def realtime(model: LipActivityModel, face: TalkingFace, streams: int, fps: float, seconds: float) -> dict:
    """``streams`` cameras through a real scheduler in real time (see the module docstring)."""
    from streamrt.clock import MonotonicClock
    from streamrt.scheduler import Scheduler
    from streamrt.stream_session import StepOutput, StreamSession

    clock = MonotonicClock()
    clip = face.render(((0.0, seconds * 1000.0, "talk"),), fps)
    sched = Scheduler(model, clock=clock)
    await sched.start()
    sent: dict[tuple[str, float], float] = {}
    waits: list[float] = []

    def on_output(session) -> None:
        now = clock.now()
        for ev in session.events():
            if isinstance(ev, StepOutput):
                waits.extend(now - sent[(session.id, a.time_ms)] for a in ev.result.lips)

    sessions = [StreamSession(model.create_stream(), clock) for _ in range(streams)]
    for s in sessions:
        sched.add(s, on_output=on_output)
    t0 = clock.now()
    for t, rgb, _ in clip:
        delay = t0 + t / 1000.0 - clock.now()
        if delay > 0:
            await asyncio.sleep(delay)
        for s in sessions:
            sent[(s.id, t)] = clock.now()
            s.receive(VideoFrame(rgb, t))
            sched.wake(s)
    for s in sessions:
        s.receive_eof()
        sched.wake(s)
    await sched.stop()
    stats = sched.stats()
    w = np.sort(np.array(waits)) * 1000.0
    return {"streams": streams, "fps": fps, "seconds": seconds, "frames_sent": streams * len(clip),
            "frames_scored": len(waits), "dropped_behind": sum(s.stream.dropped["behind"] for s in sessions),
            "p50_ms": round(float(np.percentile(w, 50)), 1) if len(w) else None,
            "p95_ms": round(float(np.percentile(w, 95)), 1) if len(w) else None,
            "busy_fraction": stats["busy_fraction"], "deadline_misses": stats["deadline_misses"]}


class _ReplayTrack:
    """A face tracker that returns landmarks computed earlier for the same frame buffers."""

    def __init__(self, points: dict[int, np.ndarray | None]):
        self.points = points

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        return self.points[rgb.__array_interface__["data"][0]]

    def close(self) -> None:
        pass


class _Replay:
    name = "replay"

    def __init__(self, points: dict[int, np.ndarray | None]):
        self.points = points

    def open(self) -> _ReplayTrack:
        return _ReplayTrack(self.points)


def sweep(mesh, clips: dict[float, list], windows, stds) -> list[dict]:
    """Detection for every (window_ms, active_std) on each clip, FaceMesh run once per clip."""
    rows = []
    for fps, clip in clips.items():
        track = mesh.open()
        try:
            points = {rgb.__array_interface__["data"][0]: track.landmarks(rgb) for _, rgb, _ in clip}
        finally:
            track.close()
        for w in windows:
            for sd in stds:
                model = LipActivityModel(_Replay(points), LipActivitySettings(window_ms=w, active_std=sd))
                d = detection(clip, score_clip(model, clip), fps).to_json()
                rows.append({"window_ms": w, "active_std": sd, **d})
    return rows


def run_lips_bench(fps_list=(5.0, 15.0, 30.0), jitter_ms: float = 0.0, streams: int = 4, seconds: float = 10.0,
                   settings: LipActivitySettings = LipActivitySettings(), realtime_streams=(),
                   realtime_fps: float = 30.0, sweep_grid=None) -> dict:
    import os

    from streamrt.bench.talking_face import astronaut_face
    from streamrt.models.faces import load_face_mesh

    mesh = load_face_mesh()
    model = LipActivityModel(mesh, settings)
    face = astronaut_face(mesh)
    out = {"landmarker": model.describe(), "frame": list(face.photo.shape), "schedule": [list(s) for s in DEFAULT_SCHEDULE],
           "jitter_ms": jitter_ms, "detection": [], "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    for fps in fps_list:
        clip = face.render(DEFAULT_SCHEDULE, fps, jitter_ms=jitter_ms)
        out["detection"].append(detection(clip, score_clip(model, clip), fps).to_json())
    cap = capacity(model, face, streams, 30.0, seconds)
    # one scheduler steps one model at a time on one worker thread: its streams are bounded by the
    # wall time of a step; the machine's by CPU time over all cores (one scheduler per core)
    wall, cpu = cap["wall_s_per_video_s_per_stream"], cap["cpu_s_per_video_s_per_stream"]
    cap["streams_per_scheduler_at_30fps"] = int(1 / wall) if wall else None
    cap["streams_per_machine_at_30fps"] = int((os.cpu_count() or 1) / cpu) if cpu else None
    out["capacity"] = cap
    if sweep_grid is not None:
        clips = {fps: face.render(DEFAULT_SCHEDULE, fps, jitter_ms=jitter_ms) for fps in fps_list}
        out["sweep"] = sweep(mesh, clips, *sweep_grid)
    if realtime_streams:
        out["realtime"] = [asyncio.run(realtime(model, face, n, realtime_fps, seconds)) for n in realtime_streams]
    return out


def register(app) -> None:
    import json

    import typer

    @app.command("lips")
    def lips(
        fps: str = typer.Option("5,15,30", help="frame rates to score the animated clip at, comma-separated"),
        jitter_ms: float = typer.Option(0.0, help="move each frame's time by up to this much (ms)"),
        streams: int = typer.Option(4, help="concurrent camera streams for the capacity figure"),
        seconds: float = typer.Option(10.0, help="seconds of video per stream for the capacity figure"),
        window_ms: float = typer.Option(LipActivitySettings.window_ms, help="the rule's window (ms)"),
        active_std: float = typer.Option(LipActivitySettings.active_std, help="mouth-opening std that counts as moving"),
        realtime_streams: str = typer.Option("", "--realtime", help="camera counts to run in real time at 30 fps "
                                             "through a real scheduler, comma-separated (e.g. 4,8,12)"),
        realtime_fps: float = typer.Option(30.0, help="frame rate of the --realtime cameras"),
        sweep_window: str = typer.Option("", help="window_ms values for a sensitivity sweep, comma-separated"),
        sweep_std: str = typer.Option("", help="active_std values for the sweep, comma-separated"),
    ) -> None:
        """Lip-activity precision/recall and onset delay on an animated real photo; cost per frame; streams held."""
        try:
            rates = tuple(float(f) for f in fps.split(","))
        except ValueError:
            raise typer.BadParameter(f"--fps must be numbers separated by commas, not {fps!r}")
        try:
            counts = tuple(int(n) for n in realtime_streams.split(",") if n.strip())
        except ValueError:
            raise typer.BadParameter(f"--realtime must be integers separated by commas, not {realtime_streams!r}")
        try:
            grid = (tuple(float(x) for x in (sweep_window or str(window_ms)).split(",")),
                    tuple(float(x) for x in (sweep_std or str(active_std)).split(",")))
        except ValueError:
            raise typer.BadParameter("--sweep-window / --sweep-std must be numbers separated by commas")
        s = LipActivitySettings(window_ms=window_ms, active_std=active_std)
        typer.echo(json.dumps(run_lips_bench(rates, jitter_ms, streams, seconds, s, counts, realtime_fps,
                                             grid if sweep_window or sweep_std else None)))
