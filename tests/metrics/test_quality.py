"""WER (percent, jiwer), the Whisper English normaliser, BLEU and chrF (sacrebleu)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metrics import normalize, quality


def test_wer_is_corpus_errors_over_reference_words_in_percent():
    # 1 deletion in 4 words + 1 substitution in 2 words = 2 errors / 6 words
    assert quality.wer(["the cat sat", "a dog"], ["the cat sat down", "a cat"], normalize=None) == pytest.approx(100 * 2 / 6)


def test_wer_with_whisper_english_normaliser_ignores_case_punctuation_and_spelling():
    hyp, ref = "Hello, World! I won't pay twenty dollars for the colour.", "hello world i will not pay $20 for the color"
    assert quality.wer([hyp], [ref], normalize=True) == 0
    assert quality.wer([hyp], [ref], normalize=None) > 50


def test_wer_empty_reference_counts_insertions():
    assert quality.wer(["extra words", "a b"], ["", "a b"], normalize=None) == 100.0
    assert quality.wer([""], [""], normalize=None) == 0.0


def test_english_normaliser_matches_the_transformers_port_of_openai_whisper():
    """Radford et al. 2022 appendix C: both ports must give the same text."""
    import importlib.util
    from importlib.resources import files

    # load the one file, not the transformers package (whose import takes seconds)
    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("transformers is not installed")
    path = Path(spec.submodule_search_locations[0]) / "models" / "whisper" / "english_normalizer.py"
    module_spec = importlib.util.spec_from_file_location("_hf_whisper_english_normalizer", path)
    english_normalizer = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(english_normalizer)

    mapping = json.loads((files("whisper_normalizer") / "normalizers" / "english.json").read_text())
    reference = english_normalizer.EnglishTextNormalizer(mapping)
    for text in ["Mr. Smith paid $10.50 for twenty-one colours, didn't he?",
                 "Hmm, I won't go [laughs] (uh) to the theatre at 3:30 pm.",
                 "It is one hundred and five percent OK", "Ça va? naïve café", "  "]:
        assert normalize.english(text) == reference(text)


def test_bleu_and_chrf_are_sacrebleu_corpus_scores():
    from sacrebleu.metrics.bleu import BLEU
    from sacrebleu.metrics.chrf import CHRF

    hyps = ["the cat sat on the mat", "hello there world"]
    refs = ["The cat sat on the mat.", "hello world"]
    assert quality.bleu(hyps, refs) == BLEU(tokenize="13a").corpus_score(hyps, [refs]).score
    assert quality.chrf(hyps, refs) == CHRF().corpus_score(hyps, [refs]).score
    assert quality.bleu(refs, refs) == pytest.approx(100)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        quality.wer(["a", "b"], ["a"])
