"""VoiceAgent, what a server serves: the models it puts on the scheduler, per-session options
checked with the option named, the turn policy by name or with options, and an optional greeting
spoken first (as its own agent turn, paced like any other)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from streamrt.clock import ManualClock
from streamrt.dialogue.agent import VoiceAgent
from streamrt.dialogue.events import AgentAudioEvent, AgentTurnEndEvent, AgentTurnStartEvent
from streamrt.dialogue.session import DialogueModels
from streamrt.errors import ConfigError, PolicyOptionError, UnknownPolicyError
from streamrt.models.vad import load_vad
from streamrt.scheduler import Scheduler, SchedulerSettings
from streamrt.testing import CountingModel, EchoTextModel, ToneTtsModel


def _agent(clock, **kw) -> VoiceAgent:
    models = DialogueModels(asr=CountingModel(), llm=EchoTextModel(), tts=ToneTtsModel(word_ms=100), vad=load_vad())
    return VoiceAgent(models, clock, **kw)


def test_options_are_checked_and_named():
    clock = ManualClock()
    agent = _agent(clock)
    assert set(agent.models()) == {"vad", "llm", "tts"} and agent.output_sample_rate == 24000
    sched = Scheduler(agent.dialogue_models.asr, clock=clock)
    for name, model in agent.models().items():
        sched.add_model(model, name=name)
    with pytest.raises(ConfigError, match="known: turn_policy"):
        agent.new_session({"voice": "x"}, scheduler=sched)
    with pytest.raises(UnknownPolicyError):
        agent.new_session({"turn_policy": "nope"}, scheduler=sched)
    with pytest.raises(PolicyOptionError, match="silence_ms"):
        agent.new_session({"turn_policy": {"name": "silence", "silence_ms": -5}}, scheduler=sched)
    with pytest.raises(ConfigError, match="greeting"):
        agent.new_session({"greeting": ""}, scheduler=sched)
    s = agent.new_session({"turn_policy": {"name": "silence", "silence_ms": 500}}, scheduler=sched, session_id="a")
    assert s.policy.describe()["silence_ms"] == 500 and s.id == "a"
    with pytest.raises(UnknownPolicyError):
        _agent(clock, turn_policy="nope")
    assert agent.describe()["turn_policy"]["name"] == "semantic"


async def test_a_greeting_is_spoken_first_and_paced():
    clock = ManualClock()
    agent = _agent(clock)
    sched = Scheduler(agent.dialogue_models.asr, clock=clock,
                      settings=SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None))
    for name, model in agent.models().items():
        sched.add_model(model, name=name)
    await sched.start()
    s = agent.new_session({"greeting": "Hello, how can I help?"}, scheduler=sched)
    events = []
    for _ in range(40):  # 1.28 s of silence from the user
        s.receive_audio(np.zeros(512, np.float32))
        await asyncio.sleep(0)
        await sched.wait_idle()
        clock.advance(0.032)
        events += [(clock.now(), e) for e in s.events()]
    s.receive_eof()
    await sched.wait_idle()
    events += [(clock.now(), e) for e in s.events()]
    await sched.stop()
    kinds = [type(e) for _, e in events]
    assert kinds.index(AgentTurnStartEvent) < kinds.index(AgentAudioEvent) < kinds.index(AgentTurnEndEvent)
    (end,) = [e for _, e in events if isinstance(e, AgentTurnEndEvent)]
    assert end.text == "Hello, how can I help?" and end.turn == 1
    audio = [(t, e) for t, e in events if isinstance(e, AgentAudioEvent)]
    assert sum(len(e.samples) for _, e in audio) == 5 * 100 * 24  # 5 words of 100 ms at 24 kHz
    assert audio[-1][0] - audio[0][0] >= 0.5 - 0.2 - 0.032  # paced: over the speech, less the lead (+ a frame)
