"""``streamrt bench llm-beside-asr``: real-time Whisper streams and LLM chats on one Scheduler.

Not a test: it runs on the wall clock and prints figures. ``streams`` Whisper sessions (a preset, as
served) are fed a real recording at real-time pace, as in ``streamrt bench streams``; beside them
``chats`` conversations with the LLM each ask a question, wait for the whole reply
(``reply_tokens`` tokens, greedy, no end token), pause ``turn_gap_s`` and ask the next, for
``duration_s``. One scheduler, one worker thread: what the chats cost the captions and back.

Figures: the ASR side as ``bench streams`` reports it (``asr.p95_commit_delay_ms``,
``asr.kept_realtime``, ...), and per reply its time to first token (end of the user's turn to the
first reply token reaching the session's callback) and its token rate after the first token:
``chats.ttft_ms_p50`` / ``_p95``, ``chats.reply_tok_s_p50``, ``chats.replies``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

QUESTIONS = ("What is the capital of France?", "Give me two tips for sleeping better.",
             "Why is the sea salty? Answer briefly.", "Write one sentence about lighthouses.",
             "What should I pack for a weekend hike?", "Explain what a verb is to a child.")


@dataclass(frozen=True)
class BesideSettings:
    streams: int = 4
    chats: int = 2
    duration_s: float = 30.0
    preset: str | None = None  # streamrt.presets name (None: the default preset)
    whisper: str = "tiny.en"
    llm: str = "smollm2-135m"
    llm_precision: str = "auto"
    reply_tokens: int = 48
    turn_gap_s: float = 2.0
    chunk_ms: float = 100.0
    audio: str | None = None


async def run_beside(asr: Any, llm: Any, audio: np.ndarray, s: BesideSettings) -> dict:
    """Run the streams and the chats; ``asr`` a Whisper streaming model, ``llm`` an
    ``LlmConversationModel`` whose replies are ``s.reply_tokens`` long."""
    from streamrt.bench.stream_records import StreamRecord, loop_audio, rounded_percentile, summarize
    from streamrt.clock import MonotonicClock
    from streamrt.scheduler import Scheduler
    from streamrt.session import Session, SessionLimits
    from streamrt.stream_session import StepOutput, StreamSession
    from streamrt.types import ErrorEvent, TextDelta

    clock = MonotonicClock()
    sched = Scheduler(asr, clock=clock)
    sched.add_model(llm, name="llm")
    sr = asr.sample_rate
    chunk = max(1, int(s.chunk_ms * sr / 1000))

    def on_caption(session: Session, rec: StreamRecord) -> None:
        rec.take_events(sched.session_stats(session), clock.now())

    async def caption(i: int, rec: StreamRecord) -> None:
        n = int(s.duration_s * sr)
        samples = loop_audio(audio, n, (i * 7919 * sr // 10) % max(len(audio), 1))
        await asyncio.sleep(i * s.chunk_ms / 1000.0 / max(s.streams, 1))
        rec.start = clock.now()
        sched.add(rec.session, on_output=lambda sess: on_caption(sess, rec))
        for a in range(0, n, chunk):
            piece = samples[a: a + chunk]
            delay = rec.start + (a + len(piece)) / sr - clock.now()
            if delay > 0:
                await asyncio.sleep(delay)
            rec.session.receive_audio(piece)
            sched.wake(rec.session)
        rec.session.receive_eof()
        sched.wake(rec.session)
        await rec.ended.wait()

    ttfts: list[float] = []
    rates: list[float] = []
    chat_errors: list[str] = []

    async def chat(i: int) -> None:
        session = StreamSession(llm.create_stream(), clock, session_id=f"chat{i}")
        got = {"tokens": 0, "first": None, "last": None}
        done = asyncio.Event()

        def on_output(sess) -> None:
            now = clock.now()
            for ev in sess.events():
                if isinstance(ev, StepOutput) and ev.result.tokens:
                    got["first"] = got["first"] or now
                    got["last"] = now
                    got["tokens"] += len(ev.result.tokens)
                    if got["tokens"] >= s.reply_tokens:
                        done.set()
                elif isinstance(ev, ErrorEvent):
                    chat_errors.append(f"{ev.code}: {ev.message}")
                    done.set()

        await asyncio.sleep(0.5 + i * 0.7)  # the captions are running; chats start apart
        sched.add(session, on_output=on_output, model=llm)
        end = clock.now() + s.duration_s - 1.0
        turn = 0
        while clock.now() < end and not chat_errors:
            got.update(tokens=0, first=None, last=None)
            done.clear()
            asked = clock.now()
            session.receive(TextDelta(QUESTIONS[(i + turn) % len(QUESTIONS)] + " ", end_of_turn=True))
            sched.wake(session)
            await done.wait()
            if got["first"] is not None:
                ttfts.append(1000.0 * (got["first"] - asked))
                if got["tokens"] > 1 and got["last"] > got["first"]:
                    rates.append((got["tokens"] - 1) / (got["last"] - got["first"]))
            turn += 1
            await asyncio.sleep(s.turn_gap_s)
        session.receive_eof()
        sched.wake(session)

    limits = SessionLimits(max_buffered_audio_s=None)
    records = [StreamRecord(Session(asr.create_stream(), clock, model_sample_rate=sr, input_sample_rate=sr,
                                     limits=limits, session_id=f"asr{i}")) for i in range(s.streams)]
    await sched.start()
    t0 = time.perf_counter()
    await asyncio.gather(*(caption(i, r) for i, r in enumerate(records)), *(chat(i) for i in range(s.chats)))
    wall_s = time.perf_counter() - t0
    stats = sched.stats()
    await sched.stop()
    asr_out = summarize(records, stats, s.streams, s.duration_s, wall_s, sched.settings.latency_budget_ms, False)

    chats = {"chats": s.chats, "replies": len(ttfts), "reply_tokens": s.reply_tokens,
             "ttft_ms_p50": rounded_percentile(ttfts, 50), "ttft_ms_p95": rounded_percentile(ttfts, 95), "ttft_ms_max": rounded_percentile(ttfts, 100),
             "reply_tok_s_p50": round(statistics.median(rates), 1) if rates else None,
             "reply_tok_s_min": round(min(rates), 1) if rates else None, "errors": sorted(set(chat_errors))[:5],
             "llm_lane": {k: stats["models"]["llm"][k] for k in ("steps", "batch_size_mean", "degradation")}}
    keep = ("streams", "kept_realtime", "streams_kept_realtime", "p50_commit_delay_ms", "p95_commit_delay_ms",
            "rtf_max", "max_lag_ms", "units", "failed_streams", "errors", "degradation_level_end")
    return {"asr": {k: asr_out[k] for k in keep}, "chats": chats, "busy_fraction": stats.get("busy_fraction"),
            "wall_s": round(wall_s, 1)}


def bench_beside(s: BesideSettings) -> dict:
    from streamrt.audio import load_audio
    from streamrt.bench.streams import default_audio_path
    from streamrt.decoding.llm_batch import DecoderSettings, LlmDecoder
    from streamrt.decoding.llm_sampling import SamplingSettings
    from streamrt.models.llm import load_llm
    from streamrt.models.llm.runtime import build_lm
    from streamrt.presets import DEFAULT_PRESET, load_model
    from streamrt.quant.precision import detect_cpu
    from streamrt.tasks.llm_conversation import ConversationSettings, LlmConversationModel

    asr = load_model(s.whisper, s.preset or DEFAULT_PRESET)
    bundle = load_llm(s.llm)
    lm, _ = build_lm(bundle, s.llm_precision)
    turns = int(s.duration_s / s.turn_gap_s) + 1
    decoder = LlmDecoder.from_bundle(bundle, DecoderSettings(
        max_slots=max(s.chats, 1), max_context_tokens=min(2048, 64 + turns * (s.reply_tokens + 40))), lm=lm)
    llm = LlmConversationModel(bundle, decoder, ConversationSettings(
        sampling=SamplingSettings(max_new_tokens=s.reply_tokens, end_tokens=())))
    audio = load_audio(s.audio or default_audio_path(), asr.sample_rate)
    out = asyncio.run(run_beside(asr, llm, audio, s))
    described = asr.describe()
    return {"whisper": s.whisper, "preset": described.get("preset"), "asr_precision": described.get("precision"),
            "llm": s.llm, **{f"llm_{k}": v for k, v in lm.lm_precision.describe().items()},
            "cpu_capability": detect_cpu().label, **out, "load_average_end": [round(x, 2) for x in os.getloadavg()],
            "settings": asdict(s)}


def register(app) -> None:
    """Add ``llm-beside-asr`` to the ``streamrt bench`` typer app."""
    import json

    import typer

    @app.command("llm-beside-asr")
    def beside(
        streams: int = typer.Option(4, help="real-time Whisper streams"),
        chats: int = typer.Option(2, help="LLM conversations asking question after question"),
        duration: float = typer.Option(30.0, help="seconds of audio per stream, and of chatting"),
        preset: str = typer.Option(None, help="Whisper preset (`streamrt presets`; default: the default preset)"),
        llm_precision: str = typer.Option("auto", help="the LLM's precision (auto, fp32, int4-weight-only, ...)"),
        reply_tokens: int = typer.Option(48, help="tokens per reply"),
        turn_gap_s: float = typer.Option(2.0, help="pause between a reply's end and the next question (s)"),
        threads: int = typer.Option(1, help="torch threads"),
        audio: str = typer.Option(None, help="16 kHz input audio (default: a packaged recording)"),
    ) -> None:
        """Whisper streams and LLM chats on one scheduler: ASR commit delay beside the chats' TTFT."""
        import torch

        torch.set_num_threads(threads)
        s = BesideSettings(streams=streams, chats=chats, duration_s=duration, preset=preset,
                           llm_precision=llm_precision, reply_tokens=reply_tokens, turn_gap_s=turn_gap_s, audio=audio)
        typer.echo(json.dumps(bench_beside(s)))
