"""The voice agent as ``streamrt serve`` runs it (``streamrt.server.agent.load_agent``: the packaged
SmolLM2, hibari TTS, silero VAD) on a Whisper streaming model, all on one ``Scheduler`` driven in
virtual time, for ``streamrt dialogue eval``.

    agent = load_eval_agent(clock, turn_policy="semantic")
    session = agent.new_session()          # a DialogueSession on the shared models

With ``lips`` (a ``FaceLandmarker``: MediaPipe FaceMesh, the ``video`` extra) the agent also has
the lip-activity model, so its sessions take camera frames (``receive_video``).
"""

from __future__ import annotations

from typing import Any

from streamrt.clock import Clock


class EvalAgent:
    """The served agent's models on their own scheduler; one new session per scripted dialogue."""

    def __init__(self, clock: Clock, *, asr: str = "tiny.en", preset: str | None = None,
                 turn_policy: str | None = None, max_reply_tokens: int | None = None,
                 llm: str = "smollm2-135m", llm_precision: str = "auto", lips: Any = None):
        from dataclasses import replace

        from policies.turn_taking.registry import create
        from streamrt.presets import DEFAULT_PRESET, load_model
        from streamrt.scheduler import Scheduler, SchedulerSettings
        from streamrt.server.agent import AgentSettings, load_agent

        settings = AgentSettings(llm_slots=1)  # one dialogue at a time
        if turn_policy is not None:
            create(turn_policy)  # an unknown policy fails before any model loads
            settings = replace(settings, turn_policy=turn_policy)
        if max_reply_tokens is not None:
            settings = replace(settings, max_reply_tokens=max_reply_tokens)
        self.asr_name, self.preset, self.llm_precision = asr, preset or DEFAULT_PRESET, llm_precision
        self.clock = clock
        self.agent = load_agent(load_model(asr, self.preset), clock, settings, llm=llm, precision=llm_precision)
        if lips is not None:
            from streamrt.tasks.lips import LipActivityModel

            self.agent.parts = replace(self.agent.parts, lips=LipActivityModel(lips))
        # virtual time: no waiting for a batch to fill (it would wait in real time) and no degradation
        # ladder (one dialogue, and the figures are the configuration's as set)
        self.scheduler = Scheduler(clock=clock, settings=SchedulerSettings(max_wait_ms=None,
                                                                           degrade_high_water_ms=None))
        self.agent.parts.add_to(self.scheduler)

    def new_session(self):
        return self.agent.new_session({}, scheduler=self.scheduler, session_id=None)

    def describe(self) -> dict[str, Any]:
        lips = self.agent.parts.lips
        return {"asr": self.asr_name, "preset": self.preset, "llm_precision": self.llm_precision,
                **self.agent.describe(), **({"lips": lips.describe()} if lips is not None else {})}


def load_eval_agent(clock: Clock, **kwargs: Any) -> EvalAgent:
    return EvalAgent(clock, **kwargs)
