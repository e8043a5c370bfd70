"""The voice agent a server serves: the shared models, the turn policy by name, the settings; one
``DialogueSession`` per client (the shape ``streamrt.server.dialogue_protocol.DialogueAgent``
declares).

    agent = build_voice_agent(asr_model, clock)              # SmolLM2, hibari, silero, "semantic"
    hub = ...(asr_model, agent=agent)                        # its models join the server's scheduler
    session = agent.new_session({"turn_policy": "silence"}, scheduler=sched, session_id="d1")

``new_session`` options: ``turn_policy`` (a name, or {"name": ..., **options}), ``system_prompt``
(the LLM's first message), ``greeting`` (text the agent says first; off unless given).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Mapping

from policies.turn_taking.registry import create as create_turn_policy
from streamrt.clock import Clock
from streamrt.dialogue.session import DialogueModels, DialogueSession
from streamrt.dialogue.settings import DialogueSettings
from streamrt.engine import AudioModel, Describable
from streamrt.errors import ConfigError

OPTIONS = ("turn_policy", "system_prompt", "greeting")
DEFAULT_TURN_POLICY = "semantic"


class VoiceAgent:
    """turn_policy / turn_policy_options: each session's policy (a new one per session)."""

    def __init__(self, models: DialogueModels, clock: Clock, *, turn_policy: str = DEFAULT_TURN_POLICY,
                 turn_policy_options: Mapping[str, Any] | None = None, settings: DialogueSettings = DialogueSettings()):
        self.dialogue_models = models
        self.clock = clock
        self.turn_policy = turn_policy
        self.turn_policy_options = dict(turn_policy_options or {})
        self.settings = settings
        create_turn_policy(turn_policy, self.turn_policy_options)  # a bad name or option fails here, not per session

    @property
    def output_sample_rate(self) -> int:
        return self.dialogue_models.tts.sample_rate

    def models(self) -> dict[str, Any]:
        """The models besides the ASR (the server's own model) to put on the server's scheduler."""
        m = self.dialogue_models
        return {"vad": m.vad, "llm": m.llm, "tts": m.tts}

    def new_session(self, options: Mapping[str, Any], *, scheduler: Any, session_id: str | None = None,
                    input_sample_rate: int = 16000) -> DialogueSession:
        """A dialogue on ``scheduler`` (which holds the ASR and ``models()``); ConfigError names a bad option."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"unknown dialogue option(s) {unknown}; known: {', '.join(OPTIONS)}")
        name, policy_options = self.turn_policy, self.turn_policy_options
        chosen = options.get("turn_policy")
        if isinstance(chosen, str):
            name, policy_options = chosen, {}
        elif isinstance(chosen, Mapping) and isinstance(chosen.get("name"), str):
            name, policy_options = chosen["name"], {k: v for k, v in chosen.items() if k != "name"}
        elif chosen is not None:
            raise ConfigError(f"turn_policy must be a name or {{'name': ..., options}}, got {chosen!r}")
        models = self.dialogue_models
        if options.get("system_prompt") is not None:
            if not isinstance(options["system_prompt"], str):
                raise ConfigError("system_prompt must be a string")
            models = replace(models, llm_options={**models.llm_options, "system_prompt": options["system_prompt"]})
        greeting = options.get("greeting")
        if greeting is not None and (not isinstance(greeting, str) or not greeting.strip()):
            raise ConfigError(f"greeting must be a non-empty string, got {greeting!r}")
        return DialogueSession(models, scheduler, self.clock, create_turn_policy(name, policy_options),
                               settings=self.settings, input_sample_rate=input_sample_rate, session_id=session_id,
                               greeting=greeting)

    def describe(self) -> dict:
        out: dict[str, Any] = {"turn_policy": create_turn_policy(self.turn_policy, self.turn_policy_options).describe(),
                               "settings": asdict(self.settings)}
        for name in ("asr", "vad", "llm", "tts"):
            model = getattr(self.dialogue_models, name)
            if isinstance(model, Describable):
                out[name] = model.describe()
        return out


def build_voice_agent(asr: AudioModel, clock: Clock, *, llm: str = "smollm2-135m", precision: str = "auto",
                      max_sessions: int = 8, max_context_tokens: int = 2048, max_reply_tokens: int = 96,
                      tts: str = "hibari", turn_policy: str = DEFAULT_TURN_POLICY,
                      settings: DialogueSettings = DialogueSettings()) -> VoiceAgent:
    """The packaged agent: ``llm`` at ``precision`` (``max_sessions`` KV-cache slots of
    ``max_context_tokens`` tokens, replies of at most ``max_reply_tokens`` tokens), the ``tts``
    voice, silero VAD, beside ``asr``. Loads weights (seconds)."""
    from streamrt.decoding.llm_batch import DecoderSettings, LlmDecoder
    from streamrt.decoding.llm_sampling import SamplingSettings
    from streamrt.models.llm import load_llm
    from streamrt.models.llm.runtime import build_lm
    from streamrt.models.tts.load import load_tts
    from streamrt.models.vad import load_vad
    from streamrt.tasks.llm_conversation import ConversationSettings, LlmConversationModel
    from streamrt.tasks.tts import TtsModel

    bundle = load_llm(llm)
    lm, _ = build_lm(bundle, precision)
    decoder = LlmDecoder.from_bundle(bundle, DecoderSettings(max_slots=max_sessions, max_context_tokens=max_context_tokens), lm=lm)
    conversation = LlmConversationModel(bundle, decoder, ConversationSettings(
        sampling=SamplingSettings(max_new_tokens=max_reply_tokens)))
    models = DialogueModels(asr=asr, llm=conversation, tts=TtsModel(load_tts(tts)), vad=load_vad("silero"))
    return VoiceAgent(models, clock, turn_policy=turn_policy, settings=settings)
