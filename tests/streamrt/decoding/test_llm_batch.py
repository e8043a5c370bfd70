"""The causal-LM decoder on the packaged SmolLM2 (fp32): greedy tokens equal transformers' generate,
batched equals alone, chunked prefill, truncate-then-append and per-turn prefix reuse equal a fresh
prefill, seeded sampling is the same alone and batched."""

from __future__ import annotations

import itertools

import pytest
import torch

from streamrt.decoding.llm_batch import DecoderSettings, LlmDecoder
from streamrt.decoding.llm_sampling import RepeatBan, SamplingSettings, WithinWord
from streamrt.errors import ConfigError, InputError, LimitExceeded
from tests.streamrt.llm_model import hf_greedy, smollm2, smollm2_lm

pytestmark = pytest.mark.model

QUESTIONS = ["What is the capital of France?", "Write a haiku about the sea.",
             "List three prime numbers and explain why they are prime."]
NEW = 16
GREEDY = SamplingSettings(max_new_tokens=NEW, end_tokens=())  # never stops early: a fixed-length run


def _decoder(**kw) -> LlmDecoder:
    settings = DecoderSettings(**{"max_slots": 4, "max_context_tokens": 256, **kw})
    return LlmDecoder.from_bundle(smollm2(), settings, lm=smollm2_lm())


def _prompt(i: int) -> list[int]:
    return smollm2().chat_ids([{"role": "user", "content": QUESTIONS[i]}])


def _run(decoder: LlmDecoder, convs, max_steps: int = 200) -> dict[int, list[int]]:
    """Step until every conversation's reply ended; the reply tokens per conversation slot."""
    got = {c.slot: [] for c in convs}
    for _ in range(max_steps):
        live = [c for c in convs if c.reply is not None]
        if not live:
            return got
        for out in decoder.step(live):
            got[out.conversation.slot] += out.tokens
    raise AssertionError("replies did not finish")


def _alone(ids: list[int], sampling=GREEDY, **kw) -> list[int]:
    decoder = _decoder(**kw)
    conv = decoder.open()
    conv.append(ids)
    conv.start_reply(sampling)
    return _run(decoder, [conv])[conv.slot]


def test_greedy_equals_transformers_generate():
    for i in range(len(QUESTIONS)):
        ids = _prompt(i)
        assert _alone(ids) == hf_greedy(smollm2(), ids, NEW), QUESTIONS[i]


def test_batched_equals_alone_with_joins_and_leaves():
    alone = [_alone(_prompt(i)) for i in range(3)]
    decoder = _decoder()
    convs = [decoder.open() for _ in range(3)]
    got: dict[int, list[int]] = {c.slot: [] for c in convs}
    for step in range(200):
        for i, conv in enumerate(convs):
            if step == 3 * i and not conv.tokens:  # conversation i joins at step 3i, mid-reply of the others
                conv.append(_prompt(i))
                conv.start_reply(GREEDY)
        live = [c for c in convs if c.reply is not None]
        if not live and all(c.tokens for c in convs):
            break
        for out in decoder.step(live):
            got[out.conversation.slot] += out.tokens
    assert [got[c.slot] for c in convs] == alone


def test_chunked_prefill_equals_one_pass_and_decode_goes_first():
    ids = _prompt(2)
    assert _alone(ids, prefill_tokens_per_step=7) == _alone(ids)
    decoder = _decoder(prefill_tokens_per_step=10)
    a, b = decoder.open(), decoder.open()
    a.append(_prompt(0))
    a.start_reply(GREEDY)
    while not decoder.step([a])[0].tokens:  # a's prompt is read and its reply is running
        pass
    b.append(ids)
    b.start_reply(GREEDY)
    out_b, out_a = decoder.step([b, a])
    assert len(out_a.tokens) == 1 and out_a.rows == 1  # the running reply kept its token this step
    assert out_b.rows == 9 and not out_b.tokens  # the new prompt got the rest of the budget


def test_truncate_then_append_equals_fresh_prefill():
    decoder = _decoder()
    conv = decoder.open()
    first = _prompt(0)
    conv.append(first)
    conv.start_reply(GREEDY)
    _run(decoder, [conv])
    heard = len(first) + 5  # the reply was interrupted after 5 tokens: keep only those
    conv.truncate(heard)
    more = smollm2().encode("<|im_end|>\n<|im_start|>user\nAnd of Italy?<|im_end|>\n<|im_start|>assistant\n")
    conv.append(more)
    conv.start_reply(GREEDY)
    got = _run(decoder, [conv])[conv.slot]
    assert got == _alone(conv.tokens[:heard + len(more)])


def test_new_turn_prefills_only_its_new_tokens_and_equals_fresh():
    bundle = smollm2()
    decoder = _decoder()
    conv = decoder.open()
    chat = [{"role": "user", "content": QUESTIONS[0]}]
    conv.set_context(bundle.chat_ids(chat))
    conv.start_reply(SamplingSettings(max_new_tokens=40))
    _run(decoder, [conv])
    cached_before = conv.cached
    answer = bundle.decode(conv.tokens[len(bundle.chat_ids(chat)):-1])
    chat += [{"role": "assistant", "content": answer}, {"role": "user", "content": "And of Spain?"}]
    full = bundle.chat_ids(chat)
    kept = conv.set_context(full)
    assert kept >= cached_before  # the whole first turn (reply included) is reused
    conv.start_reply(GREEDY)
    first = decoder.step([conv])[0]
    assert first.rows == len(full) - cached_before
    got = list(first.tokens) + _run(decoder, [conv])[conv.slot]
    assert got == _alone(full)


def test_seeded_sampling_is_the_same_alone_and_batched():
    sampling = SamplingSettings(temperature=0.8, top_p=0.9, max_new_tokens=NEW, end_tokens=())
    ids = _prompt(1)
    decoder = _decoder()
    conv = decoder.open()
    conv.append(ids)
    conv.start_reply(sampling, generator=torch.Generator().manual_seed(7))
    alone = _run(decoder, [conv])[conv.slot]
    decoder = _decoder()
    convs = [decoder.open() for _ in range(3)]
    for i, c in enumerate(convs):
        c.append(_prompt(i) if i != 1 else ids)
        c.start_reply(sampling, generator=torch.Generator().manual_seed(7 if i == 1 else i))
    assert _run(decoder, convs)[convs[1].slot] == alone
    tiny_p = SamplingSettings(temperature=1.0, top_p=1e-6, max_new_tokens=NEW, end_tokens=())
    assert _alone(ids, tiny_p) == _alone(ids)  # top-p keeps only the best token: greedy


def test_reply_ends_at_end_token_or_stop_string_with_text_cut_before_it():
    ids = _prompt(0)
    decoder = _decoder()
    conv = decoder.open()
    conv.append(ids)
    conv.start_reply(SamplingSettings(max_new_tokens=60), end_tokens=smollm2().end_token_ids)
    outs = [o for _ in range(60) for o in decoder.step([conv]) if conv.reply is not None or o.tokens]
    assert outs[-1].finished == "end_token" and conv.reply is None
    text = "".join(o.text for o in outs)
    assert "Paris" in text and "<|im_end|>" not in text
    conv.truncate(len(ids))
    conv.start_reply(SamplingSettings(max_new_tokens=60, stop_strings=(" Paris",)))
    outs = [o for _ in range(60) if conv.reply is not None for o in decoder.step([conv])]
    assert outs[-1].finished == "stop_string"
    assert "".join(o.text for o in outs) == text[: text.index(" Paris")]


def test_limits_name_the_setting():
    with pytest.raises(ConfigError, match="prefill_tokens_per_step"):
        DecoderSettings(max_slots=16, prefill_tokens_per_step=16)
    decoder = _decoder(max_slots=1, max_context_tokens=32)
    conv = decoder.open()
    with pytest.raises(LimitExceeded, match="max_slots"):
        decoder.open()
    with pytest.raises(LimitExceeded, match="max_context_tokens"):
        conv.append(list(range(33)))
    assert conv.tokens == []  # nothing half-appended
    conv.append([1, 2, 3])
    conv.start_reply(GREEDY)
    with pytest.raises(InputError, match="stop_reply"):
        conv.truncate(1)


def test_prompt_lookup_drafts_keep_greedy_tokens_in_fewer_steps():
    page = "The lighthouse keeper wrote in his log every evening, even when nothing had happened."
    ids = smollm2().chat_ids([{"role": "user", "content": f"Repeat exactly: {page}"}])
    decoder = _decoder(draft_tokens=6)
    conv = decoder.open()
    conv.append(ids)
    conv.start_reply(GREEDY)
    reply, got, steps = conv.reply, [], 0
    while conv.reply is not None:
        got += decoder.step([conv])[0].tokens
        steps += 1
    assert got == _alone(ids)  # verification keeps exactly the greedy tokens
    assert reply.accepted > 0 and steps < 1 + NEW  # prompt step + fewer than one step per token



def test_a_banned_run_is_never_written_even_when_drafted_from_the_context():
    """A reply asked to repeat a page copies it (greedy, drafts accepted); with the page's 4-token
    runs banned (``RepeatBan``) it writes none of them, though the lookup drafts them from the
    context, and its first tokens, before a run could complete, are unchanged."""
    page = "The lighthouse keeper wrote in his log every evening, even when nothing had happened."
    ids = smollm2().chat_ids([{"role": "user", "content": f"Repeat exactly: {page}"}])
    ban = RepeatBan.of([smollm2().encode(page)], 4)
    decoder = _decoder(draft_tokens=6)
    conv = decoder.open()
    conv.append(ids)
    conv.start_reply(GREEDY, ban=ban)
    got = _run(decoder, [conv])[conv.slot]
    free = _alone(ids)
    assert any(free[i + 3] in ban.banned(free[:i + 3]) for i in range(len(free) - 3))  # it copies
    assert not any(got[i + 3] in ban.banned(got[:i + 3]) for i in range(len(got) - 3))
    assert got[:3] == free[:3] and len(got) == NEW

def _hf_end_probability(ids: list[int]) -> float:
    with torch.inference_mode():
        logits = smollm2().model(torch.tensor([ids])).logits[0, -1]
    return float(torch.softmax(logits.float(), -1)[list(smollm2().end_token_ids)].sum())


def test_score_before_also_reports_the_probability_before_the_last_tokens_in_the_same_step():
    """score_before=k: the step also reports P(end token) after all but the last k tokens (the
    words before the ASR's final "?"), equal to transformers' there, in one step, even though the
    whole context was already prefilled (those tokens are read again)."""
    bundle = smollm2()
    decoder = _decoder()
    conv = decoder.open()
    written = bundle.chat_ids([{"role": "user", "content": QUESTIONS[0]}], add_generation_prompt=False)[:-2]
    words = bundle.chat_ids([{"role": "user", "content": QUESTIONS[0][:-1]}], add_generation_prompt=False)[:-2]
    assert written[:len(words)] == words and len(written) == len(words) + 1  # "?" is one token
    conv.set_context(written)
    conv.score_end = True
    decoder.step([conv])  # scored once, plainly: the whole context is cached now
    assert conv.pending == 0
    conv.score_end, conv.score_before = True, 1
    out = decoder.step([conv])[0]
    assert out.end_probability == pytest.approx(_hf_end_probability(written), abs=1e-4)
    assert out.end_probability_before == pytest.approx(_hf_end_probability(words), abs=1e-4)
    assert out.rows == 2 and conv.pending == 0 and not conv.score_end


def test_end_probability_of_an_open_turn_equals_transformers_and_reuses_the_prefill():
    """score_end reads the partial turn to its last token and reports P(end token) there (the
    semantic turn policy's score); the prefill it did is reused, a later reply is unchanged."""
    bundle = smollm2()
    decoder = _decoder(prefill_tokens_per_step=24)  # the prompt takes two steps: scored on the last
    conv = decoder.open()
    done = bundle.chat_ids([{"role": "user", "content": QUESTIONS[0]}], add_generation_prompt=False)
    open_turn = done[:len(done) - 2]  # "...What is the capital of France?" without <|im_end|>\n
    half = bundle.chat_ids([{"role": "user", "content": "What is the"}], add_generation_prompt=False)[:-2]
    conv.set_context(open_turn)
    conv.score_end = True
    first = decoder.step([conv])[0]
    assert first.end_probability is None and conv.score_end  # still reading
    outs = [first, decoder.step([conv])[0]]
    assert outs[1].end_probability == pytest.approx(_hf_end_probability(open_turn), abs=1e-4)
    assert conv.pending == 0 and not conv.score_end
    complete = outs[1].end_probability
    conv.set_context(half)  # a revision: cached prefix kept, the last token rerun for its logits
    conv.score_end = True
    p_half = decoder.step([conv])[0].end_probability
    assert p_half == pytest.approx(_hf_end_probability(half), abs=1e-4)
    assert complete > 0.5 > p_half  # a finished question ends the turn; "What is the" does not
    ids = _prompt(0)
    conv.set_context(ids)
    conv.start_reply(GREEDY)
    assert _run(decoder, [conv])[conv.slot] == _alone(ids)


AGENT = ("You are a friendly voice assistant. The user speaks to you and hears your answer. "
         "Answer in one or two short spoken sentences, without lists or symbols.")
COOKING = [  # the eval's `cooking` dialogue as its history stood at the last turn (cut replies as heard)
    ("How do I cook rice on the stove?", "To cook rice on the stove, you'll need a few ingredients: rice, water, "
     "and a pot. First, you'll need to prepare the rice. You can use a rice cooker or a rice cooker with a pot."),
    ("I have some chicken and... Some veg tubules in the... Frage.", "The chicken is the main ingredient, and the "
     "veg is the other ingredients. You can add a little bit of rice to the chicken, but you'll need more rice to "
     "make it into a full meal."),
    ("What can I make for dinner tonight?", "You can make"),
    ("Actually, I do not like spicy food.", "You can make a simple meal for dinner. You can make a simple meal for "
     "dinner, which is a good idea. You can make a simple meal for dinner, which is a good idea."),
    ("How long should I make a potato?", "You're not a foodie, I'm not a spicy food. " * 4 + "You're not a"),
    ("Great.", "You're"),
]


def _agent_chat(turns: list[tuple[str, str]], last: str) -> tuple[list[int], list[list[int]]]:
    """The agent's context for ``last`` after ``turns`` (user, assistant), and its earlier replies' tokens."""
    msgs = [{"role": "system", "content": AGENT}]
    for user, assistant in turns:
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    msgs.append({"role": "user", "content": last})
    return smollm2().chat_ids(msgs), [smollm2().encode(a) for _, a in turns]


def _longest_run(tokens: list[int]) -> int:
    return max((len(list(g)) for _, g in itertools.groupby(tokens)), default=0)


def test_a_reply_no_longer_loops_on_itself():
    """Greedy SmolLM2 as the voice agent, with today's ban (runs of earlier replies only):
    - at the end of the eval's `cooking` dialogue, "Thanks for the help." is answered "You're welcome."
      over and over to the token cap;
    - "What is one divided by nine?" is answered "1.9999999..." to the cap (the word exemption lets
      a digit repeat).
    With the agent's ban now (also its own 4-token runs; a token at most 6 times in a row), the same
    two conversations (batched, each cut back to its prompt) answer again: the thanks stop after the
    second "You're welcome." (a third would repeat a run) and the reply ends; six nines, then the
    reply goes on; the words before are the same."""
    within = WithinWord(smollm2().decode)
    thanks, said = _agent_chat(COOKING, "Thanks for the help.")
    nine, _ = _agent_chat([], "What is one divided by nine?")
    sampling = SamplingSettings(max_new_tokens=16)
    decoder = _decoder(draft_tokens=4, max_context_tokens=512)
    convs = {"thanks": (decoder.open(), thanks, said), "nine": (decoder.open(), nine, [])}
    got = {}
    for now in (False, True):  # today's ban, then (the context cut back to the prompt, cached) the new one
        for conv, ids, earlier in convs.values():
            conv.set_context(ids)
            ban = RepeatBan.of(earlier, 4, exempt=within, within_reply=now, max_token_run=6 if now else None)
            conv.start_reply(sampling, smollm2().end_token_ids, ban=ban)
        out = _run(decoder, [c for c, _, _ in convs.values()])
        got |= {(name, now): out[c.slot] for name, (c, _, _) in convs.items()}
    assert smollm2().decode(got["thanks", False]) == " ".join(["You're welcome."] * 4)  # the loop, today
    ended = got["thanks", True]
    assert ended[-1] in smollm2().end_token_ids and smollm2().decode(ended[:-1]) == "You're welcome. You're welcome."
    today, now = got["nine", False], got["nine", True]
    digit = smollm2().encode("9")[0]
    assert _longest_run(today) > 6 and today[-1] == digit
    assert _longest_run(now) == 6 and now[:today.index(digit) + 6] == today[:today.index(digit) + 6]
    assert smollm2().decode(now[:today.index(digit)]) == "One divided by nine is 1."
    for tokens in (ended, now):  # no 4-token run of itself again (bar exempt ends)
        seen = [tuple(tokens[i:i + 4]) for i in range(len(tokens) - 3) if tokens[i + 3] not in within]
        assert len(seen) == len(set(seen))
