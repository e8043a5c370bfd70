"""The voice agent in the CLI: loading it for ``streamrt serve`` (on by default, ``--no-agent``), and
``streamrt demo --agent``: a scripted conversation through an in-process server over
``/v1/dialogue``, both sides printed with their times."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import typer

# the demo's user turns, spoken by flite (else by hibari) and sent in real time with silence between
DEMO_SCRIPT = (
    "Hello! What is the capital of France?",
    "And what language do people speak there?",
    "Thank you. Goodbye!",
)


def load_voice_agent(asr, clock, turn_policy: str, *, required: bool = False, lips=None):
    """The packaged agent on ``asr`` (``lips``: the server's lip-activity model, for a camera); when a
    part is missing: None and a warning (``required``: exit)."""
    from streamrt.errors import StreamrtError
    from streamrt.server.agent import AgentSettings, load_agent

    t0 = time.perf_counter()
    typer.echo("streamrt: loading the voice agent (SmolLM2, hibari TTS, silero VAD) ...")
    try:
        agent = load_agent(asr, clock, AgentSettings(turn_policy=turn_policy), lips=lips)
    except (StreamrtError, ImportError) as e:
        why = e.message if isinstance(e, StreamrtError) else f"{e} (pip install 'streamrt[agent,llm]')"
        if required:
            raise typer.BadParameter(why, param_hint="--agent") from None
        typer.echo(f"streamrt: no voice agent ({why}); /v1/dialogue refuses; --no-agent hides this", err=True)
        return None
    typer.echo(f"streamrt: voice agent loaded in {time.perf_counter() - t0:.1f} s")
    return agent


def speak_user_turn(text: str) -> np.ndarray:
    """``text`` spoken as a user turn: flite's voice when it is installed, else hibari's; 16 kHz."""
    from streamrt.audio import load_audio

    if shutil.which("flite"):
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "turn.wav"
            subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(out)], check=True, capture_output=True)
            audio = load_audio(out)
    else:
        import soxr

        from streamrt.models.tts import load_tts

        voice = load_tts("hibari")
        audio = soxr.resample(voice.synthesize(text, speed=1.0, rng=np.random.default_rng(0)), voice.sample_rate, 16000)
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return np.asarray(audio[loud[0]:loud[-1] + 1] if len(loud) else audio, np.float32)


def run_agent_demo(model: str, preset: str, turn_policy: str, script: tuple[str, ...] = DEMO_SCRIPT) -> int:
    """Serve the agent in-process, speak ``script`` to it over /v1/dialogue in real time, print both
    sides with times and each answer's latency. Returns the exit code."""
    from streamrt.clients.dialogue_client import converse
    from streamrt.clock import MonotonicClock
    from streamrt.presets import load_model
    from streamrt.server.asgi_server import AsgiServer
    from streamrt.server.settings import ServerSettings

    typer.echo(f"loading {model} ...")
    asr = load_model(model, preset)
    clock = MonotonicClock()
    agent = load_voice_agent(asr, clock, turn_policy, required=True)
    turns = [speak_user_turn(t) for t in script]

    heard: list[str] = []  # the user's words since the agent last spoke
    decided: list[str] = []  # why the turn policy ended the user's turn (semantic: its score and wait)

    def show(t: float, m: dict) -> None:
        kind = m["type"]
        if kind == "user_commit":
            heard.append(m["text"])
        elif kind == "user_turn_end" and m.get("end_of_turn_p") is not None:
            decided.append(f"P(end of turn) {m['end_of_turn_p']:.3f}, {m['silence_ms']:.0f} ms of silence")
        elif kind == "agent_turn_start":
            typer.echo(f"{t:7.2f}s  user : {' '.join(heard)}" + (f"  [{decided[-1]}]" if decided else ""))
            decided.clear()
            heard.clear()
            typer.echo(f"{t:7.2f}s  agent starts speaking (turn {m['turn']})")
        elif kind == "agent_turn_end":
            typer.echo(f"{t:7.2f}s  agent: {m['text']}")
        elif kind == "interrupted":
            typer.echo(f"{t:7.2f}s  agent interrupted; the user heard: {m['heard_text']!r}"
                       + (" (withdrawn: the user went on with the turn)" if m.get("user_continues") else ""))
        elif kind == "error":
            typer.echo(f"{t:7.2f}s  error {m['code']}: {m['message']}")

    async def run():
        async with AsgiServer(asr, settings=ServerSettings(model_name=model), port=0, agent=agent, clock=clock) as server:
            typer.echo(f"server on {server.url}/v1/dialogue; speaking {len(turns)} user turns in real time")
            return await converse(server.url, turns, answer_timeout_s=30.0, on_message=show)

    result = asyncio.run(run())
    typer.echo("")
    for i, turn in enumerate(result.turns, 1):
        when = ("began while the user was still speaking" if turn.latency_s is None
                else f"answered {1000 * turn.latency_s:.0f} ms after the user stopped")
        typer.echo(f"turn {i}: {when}; {len(turn.audio) / 48:.0f} ms of speech"
                   + ("" if turn.heard is None else " (interrupted)"))
    if result.end is None:
        typer.echo(f"the server closed without end (close code {result.close_code}: {result.close_reason})", err=True)
        return 1
    return 0 if result.turns else 1
