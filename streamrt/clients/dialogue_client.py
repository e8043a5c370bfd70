"""A ``/v1/dialogue`` client (websockets asyncio): speak scripted user turns in real time, silence
in between as a microphone sends, and collect both sides with their times.

    result = await converse("ws://127.0.0.1:8765/v1/dialogue", [turn1_16k, turn2_16k])
    for line in result.transcript(): print(line)
    result.turns[0].latency_s     # end of the user's speech -> the agent's first audio frame

After each user turn the client keeps sending silence until the agent's answer has ended and
``settle_s`` more passed (or ``answer_timeout_s`` with no answer), then speaks the next turn; after
the last it sends ``stop`` and waits for ``end``. The agent's audio (pcm_s16le) is kept per turn as
a player would have played it: ``agent_pause`` cuts it at the position heard (a player stops and
drops what it holds), ``agent_resume`` at the position the audio comes again from.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from streamrt.clients.ws_client import encode_pcm

DIALOGUE_PATH = "/v1/dialogue"
RATE = 16000


def dialogue_url(url: str) -> str:
    """Accept ``ws://host:port`` or the full endpoint; http(s) becomes ws(s)."""
    if url.startswith("http"):
        url = "ws" + url[4:]
    return url if url.rstrip("/").endswith(DIALOGUE_PATH) else url.rstrip("/") + DIALOGUE_PATH


@dataclass
class AgentTurn:
    turn: int
    text: str = ""
    heard: str | None = None  # set when interrupted: what the user heard
    audio: bytearray = field(default_factory=bytearray)  # as played: cut at pauses, resumed audio in place
    pauses: list[float] = field(default_factory=list)  # position_ms of each agent_pause
    first_audio_s: float | None = None  # client time of its first frame
    end_s: float | None = None
    user_end_s: float | None = None  # client time the user's speech it answers ended (None: it began
    # while the user was still speaking a turn)

    @property
    def latency_s(self) -> float | None:
        if self.first_audio_s is None or self.user_end_s is None:
            return None
        return self.first_audio_s - self.user_end_s

    def cut(self, position_ms: float, rate: int) -> None:
        """Keep the audio before ``position_ms`` (pcm_s16le at ``rate``)."""
        del self.audio[2 * int(round(position_ms * rate / 1000.0)):]

    def samples(self) -> np.ndarray:
        return np.frombuffer(bytes(self.audio), "<i2").astype(np.float32) / 32768.0


@dataclass
class DialogueResult:
    ready: dict | None = None
    messages: list[tuple[float, dict]] = field(default_factory=list)  # (client seconds, message)
    turns: list[AgentTurn] = field(default_factory=list)
    end: dict | None = None
    close_code: int | None = None
    close_reason: str = ""
    stray_audio_bytes: int = 0  # audio frames outside agent_turn_start .. agent_turn_end / interrupted

    def of_type(self, kind: str) -> list[dict]:
        return [m for _, m in self.messages if m["type"] == kind]

    def transcript(self) -> list[str]:
        """Both sides in order, with client times and each answer's latency."""
        lines = []
        for t, m in self.messages:
            if m["type"] == "user_commit":
                lines.append(f"{t:7.2f}s  user : {m['text']}")
            elif m["type"] == "agent_turn_end":
                turn = next((a for a in self.turns if a.turn == m["turn"]), None)
                lat = "" if turn is None or turn.latency_s is None else f"  (answered {1000 * turn.latency_s:.0f} ms after the user stopped)"
                lines.append(f"{t:7.2f}s  agent: {m['text']}{lat}")
            elif m["type"] == "agent_pause":
                lines.append(f"{t:7.2f}s  agent paused at {m['position_ms']:.0f} ms (the user spoke)")
            elif m["type"] == "agent_resume":
                lines.append(f"{t:7.2f}s  agent resumed from {m['position_ms']:.0f} ms")
            elif m["type"] == "interrupted":
                lines.append(f"{t:7.2f}s  agent interrupted; the user heard: {m['heard_text']!r}"
                             + (" (withdrawn: the user went on with the turn)" if m.get("user_continues") else ""))
            elif m["type"] == "error":
                lines.append(f"{t:7.2f}s  error {m['code']}: {m['message']}")
        return lines


async def converse(url: str, user_turns: Sequence[np.ndarray], *, chunk_ms: float = 100.0, settle_s: float = 0.5,
                   answer_timeout_s: float = 20.0, start: dict | None = None,
                   on_message: Callable[[float, dict], None] | None = None) -> DialogueResult:
    """Speak each of ``user_turns`` (mono float32 16 kHz) in real time and collect the dialogue."""
    result = DialogueResult()
    t0 = time.monotonic()
    n = int(RATE * chunk_ms / 1000)
    silence = encode_pcm(np.zeros(n, np.float32))
    state = {"user_end_s": None, "current": None, "answered": 0}

    async with connect(dialogue_url(url), max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": RATE, "encoding": "pcm_s16le", "channels": 1,
                                  **(start or {})}))

        async def receive() -> None:
            try:
                async for data in ws:
                    now = time.monotonic() - t0
                    if isinstance(data, bytes):
                        turn = state["current"]
                        if turn is None:
                            result.stray_audio_bytes += len(data)
                            continue
                        if turn.first_audio_s is None:
                            turn.first_audio_s = now
                        turn.audio += data
                        continue
                    m = json.loads(data)
                    result.messages.append((now, m))
                    if on_message is not None:
                        on_message(now, m)
                    kind = m["type"]
                    if kind == "ready":
                        result.ready = m
                    elif kind in ("agent_turn_start", "agent_text"):  # text may come before the audio
                        turn = next((a for a in result.turns if a.turn == m["turn"]), None)
                        if turn is None:
                            turn = AgentTurn(m["turn"], user_end_s=state["user_end_s"])
                            result.turns.append(turn)
                        if kind == "agent_text":
                            turn.text += m["text"]
                        else:
                            state["current"] = turn
                    elif kind in ("agent_pause", "agent_resume") and state["current"] is not None \
                            and state["current"].turn == m["turn"]:  # stop (drop what is held) / go on from there
                        state["current"].cut(m["position_ms"], result.ready["output_sample_rate"])
                        if kind == "agent_pause":
                            state["current"].pauses.append(m["position_ms"])
                    elif kind in ("agent_turn_end", "interrupted") and state["current"] is not None:
                        state["current"].end_s = now
                        if kind == "interrupted":
                            state["current"].heard = m["heard_text"]
                        state["current"] = None
                        state["answered"] += 1
                    elif kind == "end":
                        result.end = m
            except ConnectionClosed:
                pass

        receiver = asyncio.create_task(receive())
        next_send = time.monotonic()

        async def send(chunk: bytes) -> None:
            nonlocal next_send
            await ws.send(chunk)
            next_send += chunk_ms / 1000.0
            await asyncio.sleep(max(0.0, next_send - time.monotonic()))

        try:
            for samples in user_turns:
                answered = state["answered"]
                state["user_end_s"] = None  # an answer that starts before this turn ends has no latency
                for i in range(0, len(samples), n):
                    await send(encode_pcm(samples[i:i + n]))
                state["user_end_s"] = time.monotonic() - t0
                waited, quiet_since = 0.0, None
                while waited < answer_timeout_s:  # silence until the answer is out and settled
                    await send(silence)
                    waited += chunk_ms / 1000.0
                    done = state["answered"] > answered and state["current"] is None
                    quiet_since = (quiet_since or time.monotonic()) if done else None
                    if quiet_since is not None and time.monotonic() - quiet_since >= settle_s:
                        break
            await ws.send(json.dumps({"type": "stop"}))
            await asyncio.wait_for(receiver, answer_timeout_s)
        except ConnectionClosed:
            await receiver
        result.close_code = ws.close_code
        result.close_reason = ws.close_reason or ""
    return result
