"""The per-variant WER benchmark runs a quantized variant through the streaming evaluation."""

import pytest

pytestmark = [pytest.mark.model, pytest.mark.slow]


def test_variant_wer_reports_one_row_per_requested_variant():
    from streamrt.bench.quant_wer import variant_wer

    rows = variant_wer("data/testset.tsv", labels=["bf16"], limit=1)
    assert [r["variant"] for r in rows] == ["bf16"]
    assert rows[0]["utterances"] == 1 and not rows[0]["errors"]
    assert 0.0 <= rows[0]["WER"] <= 50.0 and rows[0]["LAAL"] > 0
