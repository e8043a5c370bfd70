"""The LLM lane's degradation ladder turns FlexiQ's knob (docs/scheduler.md, "Degradation ladder";
docs/llm.md): an ``LlmConversationModel`` over a FlexiQ-quantized decoder offers the scheduler's
``PrecisionKnob`` protocol, and a real Scheduler in virtual time raises the LLM's low-bit fraction
while the machine is busy and lowers it again when the load falls. A tiny random Llama (one token per
character) keeps it fast; the packaged model's knob is the same code."""

from __future__ import annotations

import pytest
import torch

from streamrt.clock import ManualClock
from streamrt.decoding.llm_batch import DecoderSettings, LlmDecoder
from streamrt.decoding.llm_sampling import SamplingSettings
from streamrt.models.llm.runtime import build_lm
from streamrt.quant import MixedPrecisionLinear
from streamrt.scheduler import Scheduler, SchedulerSettings
from streamrt.scheduler.degradation import Degradation, PrecisionKnob
from streamrt.session import Session
from streamrt.stream_session import StepOutput, StreamSession
from streamrt.tasks.llm_conversation import ConversationSettings, LlmConversationModel
from streamrt.types import TextDelta
from tests.streamrt.scheduler.sched_helpers import Recorder, TimedCountingModel, advance_to, chunk

VOCAB = 96


class CharBundle:
    """A bundle over a tiny random Llama: one token per character, no end token."""

    end_token_ids = ()

    def __init__(self):
        import transformers

        torch.manual_seed(0)
        config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                          max_position_embeddings=256)
        self.model = transformers.LlamaForCausalLM(config).eval()

    def chat_ids(self, messages, *, add_generation_prompt=True):
        ids = [1 + ord(c) % (VOCAB - 2) for m in messages for c in m["content"]]
        return ids + ([VOCAB - 1] if add_generation_prompt else [])

    def decode(self, ids):
        return "".join(chr(32 + i % 90) for i in ids)


@pytest.fixture(scope="module")
def bundle():
    return CharBundle()


def _llm(bundle, precision, new_tokens=8):
    lm, _ = build_lm(bundle, precision, **({"group_size": 32, "fraction": 0.0} if precision == "flexiq" else {}))
    decoder = LlmDecoder.from_bundle(bundle, DecoderSettings(max_slots=2, max_context_tokens=200), lm=lm)
    return LlmConversationModel(bundle, decoder, ConversationSettings(
        sampling=SamplingSettings(max_new_tokens=new_tokens, end_tokens=())))


def _fractions(llm) -> set[float]:
    return {m.fraction for m in llm.decoder.lm.modules() if isinstance(m, MixedPrecisionLinear)}


def test_a_flexiq_llm_offers_the_precision_rungs_and_others_none(bundle):
    llm = _llm(bundle, "flexiq")
    assert isinstance(llm, PrecisionKnob)
    ladder = Degradation.for_model(llm)
    assert [s.name for s in ladder.steps] == ["precision 50% low-bit", "precision 100% low-bit"]
    ladder.set_level(llm, 2)
    assert _fractions(llm) == {1.0} and llm.low_precision_fraction == 1.0
    ladder.set_level(llm, 0)
    assert _fractions(llm) == {0.0}
    plain = _llm(bundle, "int8-dynamic")
    assert not isinstance(plain, PrecisionKnob) and Degradation.for_model(plain).max_level == 0


async def test_the_llm_ladder_raises_the_low_bit_fraction_under_load_and_lowers_it_after(bundle):
    clock = ManualClock()
    asr = TimedCountingModel(clock, fixed_s=0.2)  # a 200 ms chunk costs 200 ms: the machine is full
    llm = _llm(bundle, "flexiq")
    settings = SchedulerSettings(max_wait_ms=None, degrade_hold_ms=500, degrade_busy_window_ms=1000,
                                 degrade_memory_ms=2000)
    sched = Scheduler(asr, clock=clock, settings=settings, degradation=Degradation())  # the ASR keeps its cost
    sched.add_model(llm, name="llm")
    rec = Recorder()
    caption = Session(asr.create_stream(), clock, session_id="asr")
    chat = StreamSession(llm.create_stream(), clock, session_id="chat")
    await sched.start()
    sched.add(caption, rec)
    sched.add(chat, rec, model=llm)
    during = None
    for k in range(60):  # 12 s of audio: 4 s at full load, then light
        if k == 20:
            asr.fixed_s = 0.01  # the load falls
        await advance_to(sched, clock, k * 0.2)
        caption.receive_audio(chunk(200))
        sched.wake(caption)
        if k == 15:  # a question asked under load is answered at the raised fraction
            during = llm.low_precision_fraction
            chat.receive(TextDelta("What is the capital of France?", end_of_turn=True))
            sched.wake(chat)
    for s in (caption, chat):
        s.receive_eof()
        sched.wake(s)
    await sched.wait_idle()
    history = [level for _, level in sched.stats()["models"]["llm"]["degradation"]["history"]]
    await sched.stop()

    assert during == 1.0
    assert history == [1, 2, 1, 0]  # up while busy, back down once the load fell
    assert _fractions(llm) == {0.0}
    reply = [t for e in rec.events["chat"] if isinstance(e, StepOutput) for t in e.result.tokens]
    assert len(reply) == 8 and rec.ended("chat")
