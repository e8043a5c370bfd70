"""Hand-computed sentence scores and the edge cases every metric must get right.

Times in ms; |X| = source length, |Y| = reference length, |Y*| = prediction length."""

from __future__ import annotations

import math

import pytest

from metrics import Instance, score
from metrics.latency import (
    average_lagging,
    average_proportion,
    average_token_delay,
    differentiable_average_lagging,
    length_adaptive_average_lagging,
    yet_another_average_lagging,
)


def test_al_stacl_eq4_ideal_wait_is_one_step_behind():
    # gamma = |Y|/|X| = 3/3000; terms d_i - (i-1)*1000 = 1000, 1000, 1000; tau = 3 (d_3 = |X|)
    assert average_lagging([1000, 2000, 3000], 3000, 3) == 1000


def test_al_rewards_over_generation_but_laal_does_not_papi2022_sec3():
    delays = [500, 1000, 1500, 2000, 3000, 3000]
    # AL: rate |X|/|Y| = 1000 -> 500, 0, -500, -1000, -1000 over tau = 5 -> -400
    assert average_lagging(delays, 3000, 3) == -400
    # LAAL: rate |X|/max(|Y|,|Y*|) = 500 -> 500, 500, 500, 500, 1000 -> 600
    assert length_adaptive_average_lagging(delays, 3000, 3) == 600


def test_al_and_laal_score_d1_when_the_first_unit_comes_after_the_source_end():
    assert average_lagging([4000, 4100], 3000, 2) == 4000
    assert length_adaptive_average_lagging([4000, 4100], 3000, 2) == 4000
    # exactly at the end is not "after": tau = 1, AL = d_1 - 0
    assert average_lagging([3000, 3100], 3000, 2) == 3000


def test_yaal_drops_a_sentence_whose_first_unit_comes_at_or_after_the_source_end_polak2025_sec4():
    assert yet_another_average_lagging([3000, 3100], 3000, 2) is None
    assert yet_another_average_lagging([3500], 3000, 2) is None


def test_yaal_excludes_units_emitted_at_or_after_the_source_end():
    # rate |X|/max(|Y|,|Y*|) = 3000/4 = 750: 1000 - 0, 2000 - 750 -> 2250/2; 3000 and 3500 excluded
    assert yet_another_average_lagging([1000, 2000, 3000, 3500], 3000, 4) == 1125
    # LAAL keeps the unit at the end (tau includes it): 1000, 1250, 1500 -> 1250
    assert length_adaptive_average_lagging([1000, 2000, 3000, 3500], 3000, 4) == 1250


def test_long_yaal_cuts_at_the_recording_end_not_the_segment_end():
    # segment 3000 ms long, recording ends 5000 ms after its start: 3500 counts, 5000 does not
    assert yet_another_average_lagging([1000, 3500, 5000], 3000, 3, cutoff=5000) == (1000 + 3500 - 1000) / 2


def test_dal_milk_sec4_1_pushes_each_delay_one_step_after_the_previous():
    # 1/gamma = |X|/|Y*| = 1000: d' = 1000, max(1000, 2000), max(3000, 3000) -> terms 1000, 1000, 1000
    assert differentiable_average_lagging([1000, 1000, 3000], 3000) == 1000


def test_ap_cho2016_sec3_1_is_the_mean_fraction_of_source_read():
    assert average_proportion([1000, 2000, 3000], 3000, 3) == pytest.approx(6000 / 9000)


def test_atd_kano2023_pairs_output_tokens_with_300ms_source_tokens():
    # one read of 600 ms = source tokens ending at 300 and 600; both words emitted at 600:
    # word 1 pairs with source token 1 (600 - 300), word 2 with token 2 (600 - 600)
    assert average_token_delay([600, 600]) == 150
    # with compute: elapsed - delay = 100, 150 -> per-word compute 100, 50: ends 700, 750
    assert average_token_delay([600, 600], [700, 750]) == ((700 - 300) + (750 - 600)) / 2


def _ins(prediction, delays, source_length, reference, elapsed=None, index=0):
    return Instance(index=index, prediction=prediction, delays=delays, source_length=source_length,
                    reference=reference, elapsed=elapsed if elapsed is not None else delays)


def test_char_unit_reference_length_counts_spaces_as_simuleval_does():
    # |Y| = len("ab cd") = 5 -> 1/gamma = 400/5 = 80: 100, 120, 140, 160 -> 130
    out = score([_ins("abcd", [100, 200, 300, 400], 400, "ab cd")], unit="char")
    assert out["AL"] == 130


def test_word_unit_reference_length_splits_on_single_spaces_as_simuleval_does():
    # "a  b" splits into ["a", "", "b"]: |Y| = 3, so AP = 300 / (1000 * 3)
    out = score([_ins("a b", [100, 200], 1000, "a  b")], unit="word")
    assert out["AP"] == pytest.approx(300 / 3000)


def test_one_word_reference():
    out = score([_ins("yes", [500], 1000, "Yes.")])
    assert out["AL"] == out["LAAL"] == out["YAAL"] == 500
    assert out["DAL"] == 500


def test_empty_prediction_is_skipped_by_every_latency_metric():
    empty = _ins("", [], 1000, "nothing here", index=1)
    out = score([_ins("a b", [100, 900], 1000, "a b"), empty], computation_aware=True)
    alone = score([_ins("a b", [100, 900], 1000, "a b")], computation_aware=True)
    for name in ("AL", "LAAL", "DAL", "AP", "ATD", "YAAL", "AL_CA", "ATD_CA", "YAAL_CA"):
        assert out[name] == alone[name]
    only_empty = score([empty])
    assert all(math.isnan(only_empty[k]) for k in ("AL", "LAAL", "DAL", "AP", "ATD", "YAAL"))


def test_empty_reference_in_char_units_is_skipped_by_al_and_ap_instead_of_dividing_by_zero():
    out = score([_ins("ab", [100, 200], 1000, ""), _ins("cd", [300, 400], 1000, "cd", index=1)], unit="char")
    # only the second sentence counts for AL: 1/gamma = 500 -> 300, -100 -> 100
    assert out["AL"] == 100


def test_computation_aware_scores_use_elapsed():
    out = score([_ins("a b", [100, 900], 1000, "a b", elapsed=[300, 1000])], computation_aware=True)
    assert out["AL_CA"] == average_lagging([300, 1000], 1000, 2)
    assert out["AL"] == average_lagging([100, 900], 1000, 2)


def test_without_references_lengths_fall_back_to_the_prediction_and_quality_is_not_scored():
    out = score([_ins("a b c", [100, 200, 300], 900, None)])
    assert out["AL"] == average_lagging([100, 200, 300], 900, 3)
    assert "BLEU" not in out and "WER" not in out
