"""The voice agent the server runs on ``/v1/dialogue``: the shared models, one ``DialogueSession``
per client (``DialogueAgent`` of ``streamrt.server.dialogue_protocol``).

    agent = load_agent(asr_model, clock)   # the packaged SmolLM2, hibari and silero, loaded once
    server = AsgiServer(asr_model, agent=agent, ...)

The ASR is the server's own model (captioning sessions and dialogues share it); the VAD, the LLM
conversation and the TTS join the server's scheduler beside it (``models()``). With a lip-activity
model (``load_agent(..., lips=...)``, ``streamrt serve --video``: the server's own, shared with the
captioning sessions) dialogues may start with ``"video": true`` and send camera frames.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from policies.turn_taking.registry import create as create_turn_policy
from streamrt.clock import Clock
from streamrt.dialogue.models import DialogueModels
from streamrt.dialogue.session import DialogueSession
from streamrt.dialogue.settings import DialogueSettings
from streamrt.engine import AudioModel, Describable, StreamingModel

DEFAULT_SYSTEM_PROMPT = ("You are a friendly voice assistant. The user speaks to you and hears your answer. "
                         "Answer in one or two short spoken sentences, without lists or symbols.")


@dataclass(frozen=True)
class AgentSettings:
    """turn_policy: the default turn-taking policy (entry-point group ``streamrt.turn_policies``);
    a client may pick another in ``start``. max_reply_tokens: tokens per answer. system_prompt: the
    LLM's system message (a client may replace it). reply_stop_strings: an answer ends at the first
    of these (a blank line: a spoken answer is one paragraph; SmolLM2 otherwise goes on with
    repeats of its last sentence until ``max_reply_tokens``). reply_no_repeat_tokens: an answer may
    not repeat a run of this many tokens of an earlier answer (``ConversationSettings``; SmolLM2
    otherwise answers every later turn with its earlier answer, or with the fragment of one the user
    heard before interrupting it), nor of itself (it otherwise says one sentence over and over until
    ``max_reply_tokens``); None: no ban. reply_max_token_run: tokens; the same token may not follow
    itself after this many in a row ("1.12222222..."; 6 lets "1000000" through; None: no cap).
    llm_slots: dialogues whose LLM conversation is resident at once (KV-cache slots).
    max_context_tokens: per dialogue (history and answer).
    session: the dialogue session's settings (pacing, VAD thresholds, echo guard, limits)."""

    turn_policy: str = "semantic"
    max_reply_tokens: int = 60
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    reply_stop_strings: tuple[str, ...] = ("\n\n",)
    reply_no_repeat_tokens: int | None = 4
    reply_max_token_run: int | None = 6
    llm_slots: int = 8
    max_context_tokens: int = 1024
    session: DialogueSettings = DialogueSettings()


class VoiceAgent:
    """``DialogueAgent`` over ``DialogueModels``."""

    def __init__(self, models: DialogueModels, clock: Clock, settings: AgentSettings = AgentSettings(),
                 info: Mapping[str, Any] | None = None):
        self.parts = models
        self.info = dict(info or {})  # what was loaded (names), repeated in ``describe``
        self.clock = clock
        self.settings = settings
        self.output_sample_rate = models.tts.sample_rate
        self.max_dialogues = settings.llm_slots  # each dialogue holds one LLM slot
        self.scores_video = models.lips is not None
        create_turn_policy(settings.turn_policy)  # an unknown default fails at start-up, naming the installed

    def models(self) -> Mapping[str, Any]:
        parts = {"vad": self.parts.vad, "llm": self.parts.llm, "tts": self.parts.tts}
        return parts if self.parts.lips is None else {**parts, "lips": self.parts.lips}

    def new_session(self, options: Mapping[str, Any], *, scheduler: Any, session_id: str | None,
                    on_update: Callable[[], None] | None = None) -> DialogueSession:
        policy = create_turn_policy(options.get("turn_policy", self.settings.turn_policy))
        models = self.parts
        if "system_prompt" in options:
            models = replace(models, llm_options={**models.llm_options, "system_prompt": options["system_prompt"]})
        return DialogueSession(models, scheduler, self.clock, policy, settings=self.settings.session,
                               session_id=session_id, greeting=options.get("greeting"), on_update=on_update)

    def describe(self) -> dict:
        d: dict[str, Any] = {**self.info, "turn_policy": self.settings.turn_policy,
                             "max_reply_tokens": self.settings.max_reply_tokens, "video": self.scores_video}
        if isinstance(self.parts.tts, Describable):
            d["tts"] = self.parts.tts.describe()
        return d


def load_agent(asr: AudioModel, clock: Clock, settings: AgentSettings = AgentSettings(), *,
               llm: str = "smollm2-135m", tts: str = "hibari", vad: str = "silero", precision: str = "auto",
               lips: StreamingModel | None = None) -> VoiceAgent:
    """Load the agent's models once (the LLM in ``precision``, chosen by this CPU for ``auto``);
    ``lips``: a lip-activity model already loaded (``LipActivityModel``), for camera frames."""
    from streamrt.decoding.llm_batch import DecoderSettings, LlmDecoder
    from streamrt.decoding.llm_sampling import SamplingSettings
    from streamrt.models.llm import load_llm
    from streamrt.models.llm.runtime import build_lm
    from streamrt.models.tts import load_tts
    from streamrt.models.vad import load_vad
    from streamrt.tasks.llm_conversation import ConversationSettings, LlmConversationModel
    from streamrt.tasks.tts import TtsModel

    bundle = load_llm(llm)
    lm, _ = build_lm(bundle, precision)
    decoder = LlmDecoder.from_bundle(bundle, DecoderSettings(max_slots=settings.llm_slots,
                                                             max_context_tokens=settings.max_context_tokens), lm=lm)
    conversation = LlmConversationModel(bundle, decoder, ConversationSettings(
        sampling=SamplingSettings(max_new_tokens=settings.max_reply_tokens,
                                  stop_strings=settings.reply_stop_strings), system_prompt=settings.system_prompt,
        reply_no_repeat_tokens=settings.reply_no_repeat_tokens, reply_max_token_run=settings.reply_max_token_run))
    models = DialogueModels(asr=asr, llm=conversation, tts=TtsModel(load_tts(tts)), vad=load_vad(vad), lips=lips)
    return VoiceAgent(models, clock, settings, info={"llm": bundle.name, "vad": vad})
