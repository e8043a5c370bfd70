"""Where spoken chunks end: sentence ends once the next character is known, the turn's first chunk
after a few whole words or at its first clause, the rest of the first sentence clause by clause,
long runs cut at a clause or a space, the rest at the end; chunks tile the text."""

from __future__ import annotations

import pytest

from streamrt.errors import ConfigError
from streamrt.tasks.tts_chunks import ChunkRules, next_chunk_end


SENTENCES = ChunkRules(first_chunk_words=None, first_clause_min_words=None)  # whole sentences only


def _chunks(text: str, rules: ChunkRules = ChunkRules()) -> list[str]:
    out, at = [], 0
    while (end := next_chunk_end(text, at, first=not out, final=True, rules=rules)) is not None:
        out.append(text[at:end].strip())
        at = end
    return out


def test_sentences_are_chunks_and_the_first_sentence_goes_clause_by_clause():
    text = "Well, Paris is the capital of France, and it is big. It has a river! Do you know it? Yes."
    assert _chunks(text) == ["Well,", "Paris is the capital of France,", "and it is big.", "It has a river!",
                             "Do you know it?", "Yes."]
    # only the turn's first sentence is cut at clauses; later sentences stay whole
    assert _chunks("Yes. Later, when the rain stops, we can go out.") == [
        "Yes.", "Later, when the rain stops, we can go out."]
    assert _chunks(text, SENTENCES)[0] == "Well, Paris is the capital of France, and it is big."
    assert _chunks(text, ChunkRules(first_chunk_words=None, first_clause_min_words=4))[:2] == [
        "Well, Paris is the capital of France,", "and it is big."]


def test_the_first_chunk_ends_after_a_few_words_or_at_a_clause_whichever_comes_first():
    text = "I would recommend visiting the Louvre, the Eiffel Tower and Notre Dame. They are great."
    assert _chunks(text) == ["I would recommend", "visiting the Louvre,", "the Eiffel Tower and Notre Dame.",
                             "They are great."]
    assert _chunks(text, ChunkRules(first_chunk_words=5))[0] == "I would recommend visiting the Louvre,"
    assert _chunks("Sure, I can help you with that.") == ["Sure,", "I can help you with that."]
    # not cut after a word that leans on the next ("the", "to"), for at most three more words
    assert _chunks("Paris is the capital of France.") == ["Paris is the capital", "of France."]
    assert _chunks("I'm sorry to hear that.")[0] == "I'm sorry to hear"
    assert _chunks("It is in the middle of the old town.")[0] == "It is in the middle"
    assert _chunks("Go to the a of an old town.")[0] == "Go to the a of an"


def test_a_word_counts_once_a_blank_follows_it():
    # LLM tokens come as " word": the third word may still grow until the next token's blank arrives
    assert next_chunk_end("Paris is big", 0, first=True, final=False) is None
    assert next_chunk_end("Paris is bigger", 0, first=True, final=False) is None
    assert next_chunk_end("Paris is bigger ", 0, first=True, final=False) == len("Paris is bigger ")
    assert next_chunk_end("Paris is bigger t", 0, first=True, final=False) == len("Paris is bigger ")
    assert next_chunk_end("Paris is the", 0, first=True, final=False) is None
    assert next_chunk_end("Paris is the cap", 0, first=True, final=False) is None  # "the" leans on "cap..."
    assert next_chunk_end("Paris is the capital o", 0, first=True, final=False) == len("Paris is the capital ")
    assert next_chunk_end("Paris is the capital o", 0, first=False, final=False) is None  # not the first chunk


def test_chunks_tile_the_text_so_units_map_back_to_it():
    for text in ("Well, Paris is the capital of France, and it is big. It has a river!",
                 "I'm   sorry to hear that;  you\nare - not sleeping well. Try tea, or a walk: it helps.",
                 "One two three four five six seven eight nine ten eleven twelve thirteen fourteen."):
        for rules in (ChunkRules(), ChunkRules(first_chunk_words=1), ChunkRules(max_chunk_chars=20)):
            chunks = _chunks(text, rules)
            assert " ".join(chunks).split() == text.split()
            assert all(c and c == c.strip() for c in chunks)


def test_abbreviations_initials_and_lowercase_do_not_end_a_sentence():
    assert _chunks("Dr. Smith met J. K. Rowling. Then e.g. this happened.", SENTENCES) == [
        "Dr. Smith met J. K. Rowling.", "Then e.g. this happened."]
    assert _chunks("It costs 3.50 dollars. Cheap!", SENTENCES) == ["It costs 3.50 dollars.", "Cheap!"]
    assert _chunks("A list\nof lines", SENTENCES) == ["A list", "of lines"]
    assert _chunks("Dr. Smith met J. K. Rowling. Then e.g. this happened.")[:2] == ["Dr. Smith met", "J. K. Rowling."]


def test_a_boundary_waits_for_the_next_character_and_final_flushes_the_rest():
    assert next_chunk_end("Hello there.", 0, first=True, final=False) is None  # "Dr." or an end?
    assert next_chunk_end("Hello there. ", 0, first=True, final=False) is None
    assert next_chunk_end("Hello there. W", 0, first=True, final=False) == len("Hello there. ")
    assert next_chunk_end("Hello there", 0, first=True, final=True) == len("Hello there")
    assert next_chunk_end("Sure", 0, first=True, final=False) is None
    assert next_chunk_end("Sure, I", 0, first=True, final=False) == len("Sure, ")
    text = "Sure thing, I can help, with"
    assert next_chunk_end(text, 0, first=True, final=False, rules=ChunkRules(None, 4)) == len("Sure thing, I can help, ")
    later = "Yes. Sure thing, I can help, with"
    assert next_chunk_end(later, 5, first=False, final=False) is None  # not in the first sentence
    assert next_chunk_end("done.   ", 5, first=False, final=True) is None  # only blanks left


def test_text_without_an_end_is_cut_before_max_chunk_chars():
    rules = ChunkRules(first_chunk_words=None, max_chunk_chars=40)
    words = "one two three four five six seven eight nine ten eleven twelve"
    end = next_chunk_end(words, 0, first=False, final=False, rules=rules)
    assert 30 <= end <= 40 and words[end - 1] == " " and words[end] != " "
    clause = "one two three; four five six seven eight nine ten eleven"
    assert next_chunk_end(clause, 0, first=False, final=False, rules=rules) == len("one two three; ")
    assert _chunks(words, rules) == [words[:end].strip(), words[end:]]


def test_bad_rules_name_the_setting():
    with pytest.raises(ConfigError, match="first_clause_min_words"):
        ChunkRules(first_clause_min_words=0)
    with pytest.raises(ConfigError, match="first_chunk_words must be >= 1 word.*0"):
        ChunkRules(first_chunk_words=0)
    with pytest.raises(ConfigError, match="max_chunk_chars.*characters"):
        ChunkRules(max_chunk_chars=5)
