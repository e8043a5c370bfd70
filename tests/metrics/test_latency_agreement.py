"""Agreement to 1e-9 with the reference implementations themselves on random logs:
SimulEval 1.1.4's scorers (AL, LAAL, DAL, AP, ATD and _CA) and OmniSTEval 0.1.10's YAAL."""

from __future__ import annotations

import json
import math
import random

import pytest

from metrics import read_instances, score
from metrics.scoring import latency_scores
from metrics_loggen import random_record

N_LOGS = 150
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # simuleval's logger.warn
SIMULEVAL_METRICS = ("AL", "LAAL", "DAL", "AP", "ATD")


def _write_log(path, rng, unit, n_records):
    records = [random_record(rng, i, unit) for i in range(n_records)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def _simuleval_scores(latency_scorer, LogInstance, path, unit):
    with open(path) as f:
        instances = {}
        for line in f:
            ins = LogInstance(line.strip(), unit)
            instances[ins.index] = ins
    out = {}
    for name in SIMULEVAL_METRICS:
        for ca in (False, True):
            scorer = latency_scorer.LATENCY_SCORERS_DICT[name](computation_aware=ca, use_ref_len=True)
            try:
                value = scorer(instances)
            except Exception:  # statistics.mean of nothing: every sentence skipped
                value = math.nan
            out[name + ("_CA" if ca else "")] = value
    return out


def _omnisteval_yaal(path, unit):
    from omnisteval.io import load_shortform_instances
    from omnisteval.scoring import YAALScorer

    instances = load_shortform_instances(str(path), None, "delays", "elapsed", char_level=unit == "char")
    return {
        "YAAL": YAALScorer(computation_aware=False, is_longform=False)(instances),
        "YAAL_CA": YAALScorer(computation_aware=True, is_longform=False)(instances),
    }


def _max_diff(ours, theirs):
    worst = 0.0
    for key, ref in theirs.items():
        mine = ours[key]
        if math.isnan(ref) or math.isnan(mine):
            assert math.isnan(ref) and math.isnan(mine), (key, mine, ref)
            continue
        worst = max(worst, abs(mine - ref))
    return worst


@pytest.mark.parametrize("unit", ["word", "char"])
def test_simuleval_1_1_4_scorers_agree_on_random_logs(tmp_path, simuleval_scorers, unit):
    """SimulEval latency_scorer.py: AL, LAAL, DAL, AP, ATD with and without computation."""
    latency_scorer, LogInstance = simuleval_scorers
    rng = random.Random(1234 if unit == "word" else 4321)
    worst = 0.0
    for n in range(N_LOGS):
        path = tmp_path / f"log{n}.jsonl"
        _write_log(path, rng, unit, rng.randint(1, 6))
        ours = latency_scores(read_instances(path, unit), unit, computation_aware=True,
                              metric_names=SIMULEVAL_METRICS)
        worst = max(worst, _max_diff(ours, _simuleval_scores(latency_scorer, LogInstance, path, unit)))
    print(f"\nSimulEval 1.1.4 agreement ({unit}): max |diff| = {worst:.3g} over {N_LOGS} logs")
    assert worst <= 1e-9


@pytest.mark.parametrize("unit", ["word", "char"])
def test_omnisteval_0_1_10_shortform_yaal_agrees_on_random_logs(tmp_path, unit):
    """OmniSTEval scoring.py YAALScorer(is_longform=False), CU and CA, on the same kind of logs."""
    pytest.importorskip("omnisteval")
    rng = random.Random(99 if unit == "word" else 98)
    worst = 0.0
    for n in range(N_LOGS):
        path = tmp_path / f"log{n}.jsonl"
        _write_log(path, rng, unit, rng.randint(1, 6))
        ours = latency_scores(read_instances(path, unit), unit, computation_aware=True, metric_names=("YAAL",))
        worst = max(worst, _max_diff(ours, _omnisteval_yaal(path, unit)))
    print(f"\nOmniSTEval 0.1.10 YAAL agreement ({unit}): max |diff| = {worst:.3g} over {N_LOGS} logs")
    assert worst <= 1e-9


def test_quality_matches_simuleval_bleu_on_a_random_log(tmp_path):
    """SimulEval quality_scorer.py SacreBLEUScorer: corpus BLEU, 13a tokeniser."""
    from sacrebleu.metrics.bleu import BLEU

    rng = random.Random(5)
    path = tmp_path / "log.jsonl"
    records = _write_log(path, rng, "word", 20)
    ours = score(read_instances(path), "word")
    expected = BLEU(tokenize="13a").corpus_score([r["prediction"] for r in records],
                                                 [[r["reference"] for r in records]]).score
    assert ours["BLEU"] == pytest.approx(expected, abs=1e-9)


def test_spm_unit_agrees_with_simuleval_1_1_4(tmp_path, simuleval_scorers):
    """--eval-latency-unit spm: |Y| is the number of SentencePiece pieces of the reference."""
    spm = pytest.importorskip("sentencepiece")
    import io

    from metrics_loggen import random_text

    latency_scorer, LogInstance = simuleval_scorers
    rng = random.Random(3)
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter([random_text(rng, 12) for _ in range(300)]),
                                   model_writer=proto, vocab_size=40, minloglevel=2)
    model_path = tmp_path / "spm.model"
    model_path.write_bytes(proto.getvalue())
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    records = []
    for i in range(30):
        r = random_record(rng, i, "word")
        pieces = sp.encode(r["prediction"], out_type=str) if r["prediction"] else []
        r["delays"] = sorted(rng.uniform(0, r["source_length"] * 1.1) for _ in pieces)
        r["elapsed"] = [d + 10 * k for k, d in enumerate(r["delays"])]
        r["prediction_spm"] = pieces
        records.append(r)
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))

    ours = score(read_instances(path, "spm"), "spm", computation_aware=True, spm_model=str(model_path))
    instances = {}
    for line in path.read_text().splitlines():
        ins = LogInstance(line, "spm")
        ins.set_target_spm_model(sp)
        instances[ins.index] = ins
    worst = 0.0
    for name in SIMULEVAL_METRICS:
        for ca in (False, True):
            expected = latency_scorer.LATENCY_SCORERS_DICT[name](computation_aware=ca, use_ref_len=True)(instances)
            worst = max(worst, abs(ours[name + ("_CA" if ca else "")] - expected))
    print(f"\nSimulEval 1.1.4 agreement (spm): max |diff| = {worst:.3g} over 1 log of {len(records)} sentences")
    assert worst <= 1e-9
