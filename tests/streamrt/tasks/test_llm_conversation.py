"""The LLM conversation task on the packaged SmolLM2 (fp32, greedy, few tokens) through a real
Scheduler in virtual time: the reply equals the decoder alone, beside an ASR model's sessions; a
partial turn revised before its end answers as the final text sent once; a full decoder names
max_slots; cancel mid-reply ends the chat with what it produced and frees its slot; a withdrawn
reply (preemptive generation) leaves no trace and its turn, edited, is answered as if sent once."""

from __future__ import annotations

import pytest
import torch

from streamrt.clock import ManualClock
from streamrt.decoding.llm_batch import DecoderSettings, LlmDecoder
from streamrt.decoding.llm_sampling import SamplingSettings
from streamrt.errors import ConfigError
from streamrt.scheduler import Scheduler, SchedulerSettings
from streamrt.session import Session
from streamrt.stream_session import StepOutput, StreamSession
from streamrt.tasks.llm_conversation import (ConversationSettings, LlmConversationModel, pooled_end_p,
                                             sentence_end_tokens)
from streamrt.types import ReplyHeard, TextDelta, WithdrawReply
from tests.streamrt.llm_model import smollm2, smollm2_lm
from tests.streamrt.scheduler.sched_helpers import Recorder, TimedCountingModel, advance_to, chunk, words_for

pytestmark = pytest.mark.model

NEW = 10
GREEDY = SamplingSettings(max_new_tokens=NEW, end_tokens=())  # a fixed-length reply
NO_WAIT = SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None)
QUESTION = "What is the capital of France?"


def _decoder(slots: int = 2) -> LlmDecoder:
    return LlmDecoder.from_bundle(smollm2(), DecoderSettings(max_slots=slots, max_context_tokens=256), lm=smollm2_lm())


def _alone(question: str, sampling: SamplingSettings = GREEDY) -> list[int]:
    decoder = _decoder(1)
    conv = decoder.open()
    conv.append(smollm2().chat_ids([{"role": "user", "content": question}]))
    conv.start_reply(sampling)
    tokens = []
    while conv.reply is not None:
        tokens += decoder.step([conv])[0].tokens
    return tokens


def _setup(slots: int = 2, sampling: SamplingSettings = GREEDY):
    clock = ManualClock()
    asr = TimedCountingModel(clock, fixed_s=0.02)
    llm = LlmConversationModel(smollm2(), _decoder(slots), ConversationSettings(sampling=sampling))
    sched = Scheduler(asr, clock=clock, settings=NO_WAIT)
    sched.add_model(llm, name="llm")
    return clock, sched, asr, llm


def _reply(rec: Recorder, sid: str) -> tuple[list[int], str]:
    outs = [e.result for e in rec.events[sid] if isinstance(e, StepOutput)]
    return [t for r in outs for t in r.tokens], "".join(u.text for r in outs for u in r.committed)


def _chat(llm, clock, sid):
    return StreamSession(llm.create_stream(), clock, session_id=sid)


async def test_reply_beside_asr_sessions_equals_the_decoder_alone():
    clock, sched, asr, llm = _setup()
    rec = Recorder()
    caption = Session(asr.create_stream(), clock, session_id="asr")
    chat = _chat(llm, clock, "chat")
    await sched.start()
    sched.add(caption, rec)
    sched.add(chat, rec, model=llm)
    for k in range(10):  # 2 s of audio; the question ends at 0.4 s
        await advance_to(sched, clock, k * 0.2)
        caption.receive_audio(chunk(200))
        sched.wake(caption)
        if k == 2:
            chat.receive(TextDelta(QUESTION, end_of_turn=True))
            sched.wake(chat)
    for s in (caption, chat):
        s.receive_eof()
        sched.wake(s)
    await sched.wait_idle()
    st = sched.stats()
    await sched.stop()

    tokens, text = _reply(rec, "chat")
    assert tokens == _alone(QUESTION) and len(tokens) == NEW
    assert text == smollm2().decode(tokens)
    assert rec.committed_words("asr") == words_for(2000) and rec.ended("asr") and rec.ended("chat")
    assert st["models"]["llm"]["steps"] == NEW  # one prefill step gives the first token, then one each


async def test_a_partial_turn_revised_before_its_end_answers_as_the_final_text():
    clock, sched, _, llm = _setup()
    rec = Recorder()
    chat = _chat(llm, clock, "chat")
    await sched.start()
    sched.add(chat, rec, model=llm)
    chat.receive(TextDelta("What is the capital of Spain"))  # an ASR partial: prefilled ahead
    sched.wake(chat)
    await sched.wait_idle()
    ahead = llm.steps
    stream = chat.stream
    cached_ahead = stream.conv.cached
    chat.receive(TextDelta("France?", replace_from=len("What is the capital of "), end_of_turn=True))
    chat.receive_eof()
    sched.wake(chat)
    await sched.wait_idle()
    await sched.stop()

    assert ahead == 1 and cached_ahead > 20  # the partial was read before the turn ended
    assert _reply(rec, "chat")[0] == _alone(QUESTION)
    assert rec.ended("chat")


async def test_full_decoder_names_max_slots_and_cancel_mid_reply_frees_the_slot():
    long = SamplingSettings(max_new_tokens=20, end_tokens=())
    clock, sched, _, llm = _setup(slots=1, sampling=long)
    rec = Recorder()
    first, second = _chat(llm, clock, "first"), _chat(llm, clock, "second")

    def cancel_early(session):
        rec(session)
        if session is first and len(_reply(rec, "first")[0]) >= 3:
            sched.cancel(first)

    await sched.start()
    sched.add(first, cancel_early, model=llm)
    sched.add(second, rec, model=llm)
    first.receive(TextDelta(QUESTION, end_of_turn=True))
    sched.wake(first)
    await advance_to(sched, clock, 0.0)
    second.receive(TextDelta("Hello!", end_of_turn=True))  # no slot left
    sched.wake(second)
    await sched.wait_idle()
    errors = rec.errors("second")
    assert len(errors) == 1 and "max_slots" in errors[0].message and "1" in errors[0].message

    tokens, _ = _reply(rec, "first")
    assert rec.ended("first") and 3 <= len(tokens) < 20
    assert tokens == _alone(QUESTION, long)[: len(tokens)]  # cut to what was produced

    third = _chat(llm, clock, "third")  # the one slot is free again
    sched.add(third, rec, model=llm)
    third.receive(TextDelta(QUESTION, end_of_turn=True))
    third.receive_eof()
    sched.wake(third)
    await sched.wait_idle()
    await sched.stop()
    assert _reply(rec, "third")[0] == _alone(QUESTION, long) and rec.ended("third")


async def test_a_second_turn_equals_the_whole_chat_prefilled_fresh():
    clock, sched, _, llm = _setup()
    rec = Recorder()
    chat = _chat(llm, clock, "chat")
    await sched.start()
    sched.add(chat, rec, model=llm)
    chat.receive(TextDelta(QUESTION, end_of_turn=True))
    sched.wake(chat)
    await sched.wait_idle()
    first, first_text = _reply(rec, "chat")
    rec.events["chat"].clear()
    chat.receive(TextDelta(" And of Spain?", end_of_turn=True))
    chat.receive_eof()
    sched.wake(chat)
    await sched.wait_idle()
    await sched.stop()

    history = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": first_text},
               {"role": "user", "content": " And of Spain?"}]
    decoder = _decoder(1)
    conv = decoder.open()
    conv.append(smollm2().chat_ids(history))
    conv.start_reply(GREEDY)
    expected = []
    while conv.reply is not None:
        expected += decoder.step([conv])[0].tokens
    assert first == _alone(QUESTION) and _reply(rec, "chat")[0] == expected and rec.ended("chat")


async def test_a_turn_past_max_context_tokens_fails_that_chat_and_gives_its_slot_back():
    clock, sched, _, llm = _setup(slots=1)
    rec = Recorder()
    long, short = _chat(llm, clock, "long"), _chat(llm, clock, "short")
    await sched.start()
    sched.add(long, rec, model=llm)
    long.receive(TextDelta("word " * 400, end_of_turn=True))  # > 256 tokens of context
    sched.wake(long)
    await sched.wait_idle()
    errors = rec.errors("long")
    assert len(errors) == 1 and "max_context_tokens" in errors[0].message and "256" in errors[0].message

    sched.add(short, rec, model=llm)  # the one slot is free again
    short.receive(TextDelta(QUESTION, end_of_turn=True))
    short.receive_eof()
    sched.wake(short)
    await sched.wait_idle()
    await sched.stop()
    assert _reply(rec, "short")[0] == _alone(QUESTION) and rec.ended("short")


async def test_an_open_turn_is_scored_and_a_cut_reply_keeps_only_what_was_heard():
    """TextDelta(score_end=True) reports the end-of-turn probability of the open turn (what the
    semantic turn policy reads); the reply ends by itself with end_of_turn; ReplyHeard(prefix)
    leaves only that prefix as the assistant's turn, and the next turn is answered as a chat whose
    history holds it, prefilled fresh."""
    sampling = SamplingSettings(max_new_tokens=NEW)
    clock, sched, _, llm = _setup(sampling=sampling)
    rec = Recorder()
    chat = _chat(llm, clock, "chat")
    await sched.start()
    sched.add(chat, rec, model=llm)
    scores = []
    for text in ("What is the", " capital of France?"):
        chat.receive(TextDelta(text, score_end=True))
        sched.wake(chat)
        await sched.wait_idle()
        scores += [e.result.end_of_turn_p for e in rec.events["chat"] if isinstance(e, StepOutput)
                   and e.result.end_of_turn_p is not None][len(scores):]
    assert len(scores) == 2 and scores[0] < 0.5 < scores[1]  # "What is the" is unfinished
    chat.receive(TextDelta("", end_of_turn=True))
    sched.wake(chat)
    await sched.wait_idle()
    outs = [e.result for e in rec.events["chat"] if isinstance(e, StepOutput)]
    assert outs[-1].end_of_turn and not any(r.end_of_turn for r in outs[:-1])
    said = "".join(u.text for r in outs for u in r.committed)
    heard = " ".join(said.split()[:3])
    chat.receive(ReplyHeard(heard))
    chat.receive(TextDelta("And of Spain?", end_of_turn=True))
    sched.wake(chat)
    await sched.wait_idle()
    await sched.stop()
    history = chat.stream.history
    assert history[:2] == [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": heard}]
    second = [t for e in rec.events["chat"][len(outs):] if isinstance(e, StepOutput) for t in e.result.tokens]
    fresh = history[:2] + [{"role": "user", "content": "And of Spain?"}]
    assert second == _alone_ids(smollm2().chat_ids(fresh), sampling)


def _alone_ids(ids: list[int], sampling: SamplingSettings) -> list[int]:
    decoder = _decoder(1)
    conv = decoder.open()
    conv.append(ids)
    conv.start_reply(sampling, decoder.end_tokens)
    tokens = []
    while conv.reply is not None:
        tokens += decoder.step([conv])[0].tokens
    return tokens


async def test_reply_heard_before_the_reply_began_closes_the_turn_with_an_empty_reply():
    """A barge-in before the first reply token: the turn is closed the same way (no race with the
    step that would have started the reply), the agent's turn empty."""
    clock, sched, _, llm = _setup()
    rec = Recorder()
    chat = _chat(llm, clock, "chat")
    chat.receive(TextDelta(QUESTION, end_of_turn=True))
    chat.receive(ReplyHeard(""))
    chat.receive(TextDelta("Never mind.", end_of_turn=True))
    await sched.start()
    sched.add(chat, rec, model=llm)
    await sched.wait_idle()
    await sched.stop()
    assert chat.stream.history[:3] == [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ""},
                                       {"role": "user", "content": "Never mind."}]
    assert _reply(rec, "chat")[0] == _alone_ids(smollm2().chat_ids(chat.stream.history[:3]), GREEDY)


def _end_scores(settings: ConversationSettings, texts: list[str]) -> list[float]:
    """The end-of-turn score of each text as the whole open turn (sans-I/O: the model stepped directly)."""
    llm = LlmConversationModel(smollm2(), _decoder(1), settings)
    stream = llm.create_stream()
    scores = []
    for text in texts:
        stream.accept(TextDelta(text, replace_from=0, score_end=True))
        while stream.is_ready():
            llm.step([stream])
        scores.append(stream.pop_result().end_of_turn_p)
    return scores


def test_an_unfinished_clause_scores_low_whatever_punctuation_the_asr_gave_it():
    """At a mid-turn pause Whisper wrote "After the interview, should I send?" (data/dialogues.yaml's
    `work`); scored as written, SmolLM2 gives the end of turn ~0.3, above the semantic policy's
    ``complete_p``, and the agent took the pause over. Scored on the words without their final
    punctuation, counting the tokens that end a sentence (``score_sentence_end``, the default),
    the clause stays near 0 while finished turns, a question and a statement, stay high."""
    prompt = "You are a friendly voice assistant."
    texts = ["After the interview, should I send?", "My budget is not very large, so.",
             "What is the capital of France?", "I have some chicken and some vegetables in the fridge."]
    new = _end_scores(ConversationSettings(system_prompt=prompt), texts)
    old = _end_scores(ConversationSettings(system_prompt=prompt, score_sentence_end=False), texts)
    assert max(new[:2]) < 0.01 and min(new[2:]) > 0.3
    assert old[0] > 0.2 and old[3] < 0.1  # as written: the clause above the statement


def test_a_final_mark_raises_the_words_score_to_the_geometric_mean_of_both_readings():
    """``score_with_marks`` (the default): a turn the ASR ended with a mark is also scored as
    written, in the same step, and the words' score is raised to sqrt(words x written) where that
    is higher (``pooled_end_p``): "How long should I bake a potato?" scores low on its words (a
    potato salad may follow) but high with its "?"; a clause cut at a pause with a "?" stays low,
    its words' score is ~0."""
    prompt = "You are a friendly voice assistant."
    texts = ["How long should I bake a potato?", "After the interview, should I send?", "Is it"]
    pooled = _end_scores(ConversationSettings(system_prompt=prompt), texts)
    words = _end_scores(ConversationSettings(system_prompt=prompt, score_with_marks=False), texts)
    for i in range(2):
        assert pooled[i] == pytest.approx(pooled_end_p(words[i], _written_p(prompt, texts[i])), abs=2e-4)
    assert pooled[0] > 2 * words[0] and pooled[1] < 0.01
    assert pooled[2] == words[2]  # no mark: the words' score alone
    assert pooled_end_p(0.5, 0.01) == 0.5 and pooled_end_p(None, 0.3) == 0.3  # never lowered


def _written_p(prompt: str, text: str) -> float:
    """P(end-of-turn or sentence-end token) after ``text`` as written, by transformers."""
    bundle = smollm2()
    ids = bundle.chat_ids([{"role": "system", "content": prompt}, {"role": "user", "content": text}],
                          add_generation_prompt=False)[:-2]
    with torch.inference_mode():
        logits = bundle.model(torch.tensor([ids])).logits[0, -1]
    ends = sorted(set(bundle.end_token_ids) | set(sentence_end_tokens(bundle.tokenizer)))
    return float(torch.softmax(logits.float(), -1)[ends].sum())


def _tokens(chat) -> list[int]:
    return [t for e in chat.events() if isinstance(e, StepOutput) for t in e.result.tokens]


def test_a_withdrawn_reply_leaves_no_trace_and_its_turn_is_answered_afresh():
    """Preemptive generation: a reply started on "What is the capital of" is withdrawn when the user
    goes on; mid-reply (its output of the step in flight dropped too) or after it ended by itself,
    the turn reopens, takes the new words, and its answer is the decoder's alone on the whole turn."""
    clock = ManualClock()
    llm = LlmConversationModel(smollm2(), _decoder(1), ConversationSettings(sampling=GREEDY))
    for steps in (3, NEW + 2):  # withdrawn mid-reply; after the reply ended by itself
        chat = _chat(llm, clock, f"chat{steps}")
        chat.receive(TextDelta("What is the capital of", end_of_turn=True))
        for _ in range(steps - 1):
            if chat.ready():
                chat.step(llm)
        assert len(_tokens(chat)) == min(steps - 1, NEW)  # delivered (the dialogue held them back)
        ended = not chat.ready()
        if not ended:  # the last step in flight when the withdrawal comes: its output is dropped
            chat.begin_step()
            llm.step([chat.stream])
            chat.receive(WithdrawReply())
            chat.complete_step(0.0)
        else:
            assert len(chat.stream.history) == 2
            chat.receive(WithdrawReply())
        assert _tokens(chat) == [] and chat.stream.history == []
        chat.receive(TextDelta(" France?"))
        chat.receive(TextDelta("", end_of_turn=True))
        chat.run_until_blocked(llm)
        assert _tokens(chat) == _alone(QUESTION)
        assert chat.stream.history == [{"role": "user", "content": QUESTION},
                                       {"role": "assistant", "content": chat.stream.history[1]["content"]}]
        chat.receive(WithdrawReply())  # withdrawing twice: only the latest reply, once
        chat.receive(WithdrawReply())
        assert chat.stream.history == [] and chat.stream.text == QUESTION
        chat.cancel()


def test_after_an_interruption_the_next_answer_does_not_copy_what_was_heard():
    """The eval's `health` dialogue: the user cut "How much water ..."'s answer after "The amount of
    water" and asked on; greedy SmolLM2 answered that turn, and every later one, with the fragment
    again. With ``reply_no_repeat_tokens`` the answer writes no 4-token run of an earlier one."""
    prompt = ("You are a friendly voice assistant. The user speaks to you and hears your answer. "
              "Answer in one or two short spoken sentences, without lists or symbols.")
    heard = "The amount of water"
    answers = []
    for n in (None, 4):
        llm = LlmConversationModel(smollm2(), _decoder(1), ConversationSettings(
            sampling=SamplingSettings(max_new_tokens=12), system_prompt=prompt, reply_no_repeat_tokens=n))
        stream = llm.create_stream()
        stream.accept(TextDelta("How much water should I drink every day?", end_of_turn=True))
        stream.accept(ReplyHeard(heard))  # cut before its first token: the history holds what was heard
        stream.accept(TextDelta("Sorry, what about when it is hot outside?", end_of_turn=True))
        text = ""
        while stream.is_ready():
            llm.step([stream])
            text += "".join(u.text for u in stream.pop_result().committed)
        answers.append(text)
    assert answers[0] == heard  # the copy
    said = smollm2().encode(heard)
    runs = {tuple(said[i:i + 4]) for i in range(len(said) - 3)}
    got = smollm2().encode(answers[1])
    assert answers[1] and not any(tuple(got[i:i + 4]) in runs for i in range(len(got) - 3))


def test_repeat_settings_name_themselves_and_their_units():
    with pytest.raises(ConfigError, match="reply_max_token_run must be an int >= 1 tokens or None, got 0"):
        ConversationSettings(reply_max_token_run=0)
    with pytest.raises(ConfigError, match="reply_no_repeat_tokens must be an int >= 2 tokens or None, got 1"):
        ConversationSettings(reply_no_repeat_tokens=1)
