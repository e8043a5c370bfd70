"""Long-form scores: one instance per recording, scored against a reference segmentation.

- LongYAAL (OmniSTEval 0.1.10 ``longform``): SoftSegmenter resegmentation, then YAAL per segment
  with the cut at the end of the recording (:mod:`metrics.softsegment`).
- StreamLAAL (FBK ``stream_laal.py`` 2.0): mWER resegmentation, then LAAL per segment on
  d' = max(0, d - segment start) (:mod:`metrics.streamlaal`).
- BLEU on the mWER resegmentation (as FBK reports it) and WER (percent) over whole recordings
  (references of a recording joined with spaces against its whole output).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from metrics import softsegment, streamlaal
from metrics.io import Instance, check_instance_units
from metrics.scoring import corpus_mean
from metrics.segments import Segment, group_by_recording, match_recordings
from streamrt.errors import LogFormatError

LONG_FORM_UNITS = ("word", "char")


def _prediction_units(ins: Instance, unit: str) -> list[str]:
    if unit == "word":
        return ins.prediction.split()
    chars = list(ins.prediction)
    return chars if len(chars) == len(ins.delays) else [c for c in chars if c != " "]


def score_long_form(
    instances: Sequence[Instance],
    segments: Sequence[Segment],
    unit: str = "word",
    computation_aware: bool = False,
    *,
    fix_elapsed: bool = False,
    quality: bool = True,
    wer_normalizer: Callable[[str], str] | None | str = "english",
    log_name: str = "<log>",
) -> dict[str, float]:
    """Scores of long-form ``instances`` (one per recording; delays/elapsed absolute in the
    recording, ms) against ``segments`` (see :func:`metrics.segments.read_segments`).

    Keys: LongYAAL, StreamLAAL; with ``computation_aware`` also LongYAAL_CA, StreamLAAL_CA; with
    ``quality`` also BLEU and WER. ``fix_elapsed`` applies OmniSTEval's
    ``--fix_simuleval_emission_ca`` to elapsed before LongYAAL_CA (StreamLAAL_CA always
    de-accumulates elapsed, as FBK's script does). Units: word or char.
    """
    if unit not in LONG_FORM_UNITS:
        raise ValueError(f"long-form scoring supports the units {', '.join(LONG_FORM_UNITS)}, not {unit!r}")
    for pos, ins in enumerate(instances, 1):
        problem = check_instance_units(ins, unit)
        if problem:
            raise LogFormatError(log_name, pos, f"instance {ins.index}: {problem}")
    groups = group_by_recording(segments)
    by_recording = match_recordings(instances, list(groups), log_name)

    soft: list[softsegment.ResegmentedSentence] = []
    mwer: list[streamlaal.StreamSentence] = []
    doc_hyps, doc_refs = [], []
    for rec, numbered in groups.items():
        ins = by_recording[rec]
        spans = [(seg.offset_ms, seg.duration_ms, seg.reference) for _, seg in numbered]
        elapsed = ins.elapsed if ins.elapsed else ins.delays
        soft_elapsed = softsegment.fix_elapsed(ins.delays, elapsed) if fix_elapsed else elapsed
        soft += softsegment.resegment_recording(
            _prediction_units(ins, unit), ins.delays, soft_elapsed, spans, char_level=unit == "char"
        )
        mwer += streamlaal.resegment_recording(ins.prediction, ins.delays, elapsed, spans, unit)
        doc_hyps.append(ins.prediction)
        doc_refs.append(" ".join(seg.reference for _, seg in numbered))

    out = {
        "LongYAAL": corpus_mean(softsegment.long_yaal(soft, unit, computation_aware=False)),
        "StreamLAAL": corpus_mean(streamlaal.stream_laal(mwer, unit, computation_aware=False)),
    }
    if computation_aware:
        out["LongYAAL_CA"] = corpus_mean(softsegment.long_yaal(soft, unit, computation_aware=True))
        out["StreamLAAL_CA"] = corpus_mean(streamlaal.stream_laal(mwer, unit, computation_aware=True))
    if quality:
        from metrics import quality as q

        out["BLEU"] = q.bleu([s.prediction for s in mwer], [s.reference for s in mwer])
        out["WER"] = q.wer(doc_hyps, doc_refs, normalize=wer_normalizer)
    return out
