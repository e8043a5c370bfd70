"""The real voice agent for ``streamrt dialogue eval``: Whisper (streaming, a preset as served),
silero VAD, the packaged SmolLM2 as an LLM conversation, hibari TTS, on one ``Scheduler``.

    agent = load_agent(clock, turn_policy="semantic")
    session = agent.new_session()          # a DialogueSession on the shared models
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamrt.clock import Clock

SYSTEM_PROMPT = ("You are a helpful voice assistant. Your answers are spoken aloud, so answer in one or two "
                 "short, plain sentences.")


@dataclass
class AgentConfig:
    """asr: Whisper model; preset: its streaming configuration (``streamrt presets``); llm: causal
    LM (packaged name or folder); llm_precision: ``build_lm`` precision; tts: packaged voice;
    turn_policy / turn_policy_options: a ``streamrt.turn_policies`` policy; max_new_tokens: reply
    length cap, tokens; system_prompt: the LLM's instructions."""

    asr: str = "tiny.en"
    preset: str | None = None
    llm: str = "smollm2-135m"
    llm_precision: str = "auto"
    tts: str = "hibari"
    turn_policy: str = "semantic"
    turn_policy_options: dict[str, Any] = field(default_factory=dict)
    max_new_tokens: int = 48
    system_prompt: str = SYSTEM_PROMPT


class VoiceAgent:
    """The shared models on one scheduler, and a way to open sessions on them."""

    def __init__(self, config: AgentConfig, clock: Clock):
        from policies.turn_taking.registry import create
        from streamrt.decoding.llm_batch import DecoderSettings, LlmDecoder
        from streamrt.decoding.llm_sampling import SamplingSettings
        from streamrt.dialogue.session import DialogueModels
        from streamrt.models.llm import load_llm
        from streamrt.models.llm.runtime import build_lm
        from streamrt.models.tts import load_tts
        from streamrt.models.vad import load_vad
        from streamrt.presets import DEFAULT_PRESET, load_model
        from streamrt.scheduler import Scheduler, SchedulerSettings
        from streamrt.tasks.llm_conversation import ConversationSettings, LlmConversationModel
        from streamrt.tasks.tts import TtsModel

        self.config, self.clock = config, clock
        create(config.turn_policy, config.turn_policy_options)  # an unknown policy fails before loading
        bundle = load_llm(config.llm)
        lm, _ = build_lm(bundle, config.llm_precision)
        self.llm_precision = lm.lm_precision
        decoder = LlmDecoder.from_bundle(bundle, DecoderSettings(max_slots=2, max_context_tokens=2048), lm=lm)
        llm = LlmConversationModel(bundle, decoder, ConversationSettings(
            sampling=SamplingSettings(max_new_tokens=config.max_new_tokens)))
        self.models = DialogueModels(
            asr=load_model(config.asr, config.preset or DEFAULT_PRESET), llm=llm,
            tts=TtsModel(load_tts(config.tts)), vad=load_vad("silero"),
            llm_options={"system_prompt": config.system_prompt, "max_new_tokens": config.max_new_tokens})
        # virtual time: no waiting for a batch to fill (it would wait in real time), no ladder (one session)
        self.scheduler = Scheduler(clock=clock, settings=SchedulerSettings(max_wait_ms=None,
                                                                           degrade_high_water_ms=None))
        self.models.add_to(self.scheduler)

    def new_session(self):
        from policies.turn_taking.registry import create
        from streamrt.dialogue.session import DialogueSession

        return DialogueSession(self.models, self.scheduler, self.clock,
                               create(self.config.turn_policy, self.config.turn_policy_options))

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {"asr": c.asr, "preset": c.preset, "llm": c.llm, "llm_precision": self.llm_precision.describe(),
                "tts": c.tts, "vad": "silero", "turn_policy": c.turn_policy,
                "turn_policy_options": c.turn_policy_options, "max_new_tokens": c.max_new_tokens}


def load_agent(clock: Clock, **config: Any) -> VoiceAgent:
    return VoiceAgent(AgentConfig(**config), clock)
