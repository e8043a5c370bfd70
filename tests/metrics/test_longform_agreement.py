"""Long-form agreement on random recordings: LongYAAL with OmniSTEval 0.1.10 (longform with
resegmentation, SoftSegmenter), StreamLAAL with FBK stream_laal.py 2.0's algorithm run on
mweralign's segmentation and SimulEval 1.1.4's LAALScorer."""

from __future__ import annotations

import json
import math
import os
import random

import pytest

from metrics.io import read_instances
from metrics.longform import score_long_form
from metrics.segments import read_segments
from metrics_loggen import random_long_form

N_LOGS = 60
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _write(tmp_path, n, entries, references, records):
    seg, ref, log = (tmp_path / f"seg{n}.yaml", tmp_path / f"ref{n}.txt", tmp_path / f"log{n}.jsonl")
    seg.write_text(json.dumps(entries))  # JSON is YAML
    ref.write_text("".join(r + "\n" for r in references))
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    return seg, ref, log


class _SerialPool:
    """Stands in for multiprocessing.Pool inside omnisteval.alignment: same calls, one process."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, args):
        return [fn(a) for a in args]


def _omnisteval_long_yaal(seg, ref, log, unit, fix):
    from omnisteval.io import load_resegmentation_inputs
    from omnisteval.resegment import resegment
    from omnisteval.scoring import YAALScorer

    ref_words, hyp_words, segmentation, ref_sentences = load_resegmentation_inputs(
        str(seg), None, str(ref), str(log), hypothesis_format="jsonl", char_level=unit == "char",
        offset_delays=False, fix_emission_ca_flag=fix,
    )
    instances, _ = resegment(ref_words, hyp_words, segmentation, ref_sentences, char_level=unit == "char", lang=None)
    return {
        "LongYAAL": YAALScorer(computation_aware=False, is_longform=True)(instances),
        "LongYAAL_CA": YAALScorer(computation_aware=True, is_longform=True)(instances),
    }


class _FbkLogInstance:
    """FBK's SimulEvalLogInstance: the attributes SimulEval's LAALScorer reads."""

    def __init__(self, reference, source_length, delays, elapsed, unit):
        self.reference, self.source_length = reference, source_length
        self.delays, self.elapsed, self.unit = delays, elapsed, unit
        self.metrics = {}

    @property
    def reference_length(self):
        return len(self.reference.split(" ")) if self.unit == "word" else len(self.reference.strip())


def _fbk_stream_laal(seg, ref, log, unit, LAALScorer):
    """FBK stream_laal.py's steps, one by one: group references by wav basename, mWER-split each
    recording's prediction, slice its delays piece by piece with the elapsed de-accumulation,
    score with SimulEval's LAALScorer."""
    import mweralign

    entries = json.loads(seg.read_text())
    lines = [line.strip() for line in ref.read_text().splitlines(True)]
    refs = {}
    for e, line in zip(entries, lines):
        refs.setdefault(os.path.basename(e["wav"]), []).append((line, e["offset"], e["duration"]))
    preds = {os.path.basename(json.loads(x)["source"][0]): json.loads(x) for x in log.read_text().splitlines()}
    length = (lambda s: len(s.split(" "))) if unit == "word" else (lambda s: len(s.strip()))
    instances = []
    for wav, sents in refs.items():
        p = preds[wav]
        pieces = [x.strip() for x in mweralign.align_texts("\n".join(s for s, _, _ in sents), p["prediction"]).split("\n")]
        used, prev_d, prev_e, prev_sd, prev_se = 0, None, None, None, None
        for (content, start, duration), piece in zip(sents, pieces):
            sd, se = [], []
            if piece.strip():
                n = length(piece.strip())
                for d, e in zip(p["delays"][used:used + n], p["elapsed"][used:used + n]):
                    if prev_e is None:
                        stream_e = e
                    elif e == prev_e:
                        stream_e = prev_se - prev_sd + d
                    else:
                        stream_e = e - prev_e + prev_d
                    sd.append(max(0.0, d - start * 1000))
                    se.append(max(0.0, stream_e - start * 1000))
                    prev_e, prev_d, prev_sd, prev_se = e, d, sd[-1], se[-1]
                used += n
            instances.append(_FbkLogInstance(content.strip(), duration * 1000, sd, se, unit))
    as_dict = dict(enumerate(instances))
    out = {}
    for key, ca in (("StreamLAAL", False), ("StreamLAAL_CA", True)):
        try:
            out[key] = LAALScorer(computation_aware=ca)(as_dict)
        except Exception:  # statistics.mean of nothing
            out[key] = math.nan
    return out


def _diff(ours, theirs):
    worst = 0.0
    for k, v in theirs.items():
        if math.isnan(v) or math.isnan(ours[k]):
            assert math.isnan(v) and math.isnan(ours[k]), (k, ours[k], v)
        else:
            worst = max(worst, abs(ours[k] - v))
    return worst


@pytest.mark.parametrize("unit", ["word", "char"])
def test_long_yaal_agrees_with_omnisteval_longform_resegmentation(tmp_path, monkeypatch, unit):
    """OmniSTEval longform: SoftSegmenter alignment (alignment.py) + YAALScorer(is_longform=True),
    with and without --fix_simuleval_emission_ca."""
    pytest.importorskip("omnisteval")
    import omnisteval.alignment

    monkeypatch.setattr(omnisteval.alignment, "Pool", _SerialPool)
    rng = random.Random(7 if unit == "word" else 8)
    worst = 0.0
    n_logs = N_LOGS if unit == "word" else N_LOGS // 3
    for n in range(n_logs):
        entries, references, records = random_long_form(rng, rng.randint(1, 3), unit)
        seg, ref, log = _write(tmp_path, n, entries, references, records)
        fix = n % 2 == 1
        ours = score_long_form(read_instances(log, unit), read_segments(seg, ref), unit, True, fix_elapsed=fix, quality=False)
        worst = max(worst, _diff(ours, _omnisteval_long_yaal(seg, ref, log, unit, fix)))
    print(f"\nOmniSTEval 0.1.10 LongYAAL agreement ({unit}): max |diff| = {worst:.3g} over {n_logs} logs")
    assert worst <= 1e-9


def test_stream_laal_agrees_with_fbk_algorithm_on_mweralign_segmentation(tmp_path, simuleval_scorers):
    """FBK stream_laal.py: mWER resegmentation, d' = max(0, d - start), elapsed de-accumulation,
    SimulEval 1.1.4 LAALScorer per segment."""
    pytest.importorskip("mweralign")
    latency_scorer, _ = simuleval_scorers
    rng = random.Random(11)
    worst = 0.0
    for n in range(N_LOGS):
        entries, references, records = random_long_form(rng, rng.randint(1, 3), "word")
        seg, ref, log = _write(tmp_path, n, entries, references, records)
        ours = score_long_form(read_instances(log), read_segments(seg, ref), "word", True, quality=False)
        worst = max(worst, _diff(ours, _fbk_stream_laal(seg, ref, log, "word", latency_scorer.LAALScorer)))
    print(f"\nFBK StreamLAAL agreement (word): max |diff| = {worst:.3g} over {N_LOGS} logs")
    assert worst <= 1e-9
