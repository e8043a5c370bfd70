"""Where spoken chunks end: sentence ends once the next character is known, the turn's first chunk
at its first clause of enough words, long runs cut at a clause or a space, the rest at the end."""

from __future__ import annotations

import pytest

from streamrt.errors import ConfigError
from streamrt.tasks.tts_chunks import ChunkRules, next_chunk_end


def _chunks(text: str, rules: ChunkRules = ChunkRules()) -> list[str]:
    out, at = [], 0
    while (end := next_chunk_end(text, at, first=not out, final=True, rules=rules)) is not None:
        out.append(text[at:end].strip())
        at = end
    return out


def test_sentences_are_chunks_and_a_long_first_sentence_is_cut_at_its_first_clause():
    text = "Well, Paris is the capital of France, and it is big. It has a river! Do you know it? Yes."
    assert _chunks(text) == ["Well, Paris is the capital of France,", "and it is big.", "It has a river!",
                             "Do you know it?", "Yes."]
    # only the first chunk of a turn is cut at a clause; later sentences stay whole
    assert _chunks("Yes. Later, when the rain stops, we can go out.") == [
        "Yes.", "Later, when the rain stops, we can go out."]
    assert _chunks(text, ChunkRules(first_clause_min_words=None))[0] == "Well, Paris is the capital of France, and it is big."


def test_abbreviations_initials_and_lowercase_do_not_end_a_sentence():
    assert _chunks("Dr. Smith met J. K. Rowling. Then e.g. this happened.") == [
        "Dr. Smith met J. K. Rowling.", "Then e.g. this happened."]
    assert _chunks("It costs 3.50 dollars. Cheap!") == ["It costs 3.50 dollars.", "Cheap!"]
    assert _chunks("A list\nof lines") == ["A list", "of lines"]


def test_a_boundary_waits_for_the_next_character_and_final_flushes_the_rest():
    assert next_chunk_end("Hello there.", 0, first=True, final=False) is None  # "Dr." or an end?
    assert next_chunk_end("Hello there. ", 0, first=True, final=False) is None
    assert next_chunk_end("Hello there. W", 0, first=True, final=False) == len("Hello there. ")
    assert next_chunk_end("Hello there", 0, first=True, final=True) == len("Hello there")
    assert next_chunk_end("Sure, I can", 0, first=True, final=False) is None  # "Sure," is too short
    text = "Sure thing, I can help, with"
    assert next_chunk_end(text, 0, first=True, final=False) == len("Sure thing, I can help, ")
    assert next_chunk_end(text, 0, first=False, final=False) is None
    assert next_chunk_end("done.   ", 5, first=False, final=True) is None  # only blanks left


def test_text_without_an_end_is_cut_before_max_chunk_chars():
    rules = ChunkRules(max_chunk_chars=40)
    words = "one two three four five six seven eight nine ten eleven twelve"
    end = next_chunk_end(words, 0, first=False, final=False, rules=rules)
    assert 30 <= end <= 40 and words[end - 1] == " " and words[end] != " "
    clause = "one two three; four five six seven eight nine ten eleven"
    assert next_chunk_end(clause, 0, first=False, final=False, rules=rules) == len("one two three; ")
    assert _chunks(words, rules) == [words[:end].strip(), words[end:]]


def test_bad_rules_name_the_setting():
    with pytest.raises(ConfigError, match="first_clause_min_words"):
        ChunkRules(first_clause_min_words=0)
    with pytest.raises(ConfigError, match="max_chunk_chars.*characters"):
        ChunkRules(max_chunk_chars=5)
