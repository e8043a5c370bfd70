"""`streamrt eval score` through typer's CliRunner on the real app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamrt.cli import app

DATA = Path(__file__).parents[2] / "metrics" / "data"
LATENCY = ["AL", "LAAL", "DAL", "AP", "ATD", "YAAL"]
runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["eval", "score", *map(str, args)])


def test_json_keys_are_exactly_the_metric_names():
    result = _run(DATA / "example_instances.log", "--format", "json")
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)) == LATENCY + ["BLEU", "WER"]


def test_computation_aware_adds_the_ca_metrics_and_keeps_plain_ones_plain():
    plain = json.loads(_run(DATA / "example_instances.log", "--format", "json").stdout)
    result = _run(DATA / "example_instances.log", "--format", "json", "--computation-aware")
    scores = json.loads(result.stdout)
    assert list(scores) == LATENCY + [m + "_CA" for m in LATENCY] + ["BLEU", "WER"]
    # SimulEval 1.1.4's CLI labels CA numbers as plain ones when --computation-aware is on; not here
    assert all(scores[m] == plain[m] for m in LATENCY)
    assert all(scores[m + "_CA"] > scores[m] for m in ("AL", "LAAL", "YAAL"))


def test_no_references_means_no_quality_keys(tmp_path):
    log = tmp_path / "log"
    log.write_text(json.dumps({"index": 0, "prediction": "a", "delays": [1], "elapsed": [2],
                               "reference": None, "source_length": 10}) + "\n")
    assert list(json.loads(_run(log, "--format", "json").stdout)) == LATENCY


def test_table_lists_each_metric():
    result = _run(DATA / "example_instances.log")
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == LATENCY + ["BLEU", "WER"]


def test_bad_line_gives_one_line_error_and_exit_code_2(tmp_path):
    log = tmp_path / "instances.log"
    good = (DATA / "example_instances.log").read_text().splitlines()[0]
    bad = json.dumps({**json.loads(good), "delays": [5, 3] + [9] * 12})
    log.write_text(good + "\n" + bad + "\n")
    result = _run(log)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {log}:2: delays are not monotonic: delays[1] = 3 < delays[0] = 5"]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    (["missing.log"], "cannot read missing.log"),
    ([DATA / "example_instances.log", "--segments", "x.yaml"], "needs both --segments and --references"),
    ([DATA / "example_instances.log", "--unit", "spm"], "--unit spm needs --spm-model"),
    ([DATA / "example_instances.log", "--unit", "char"], "delays are shorter than the prediction: 14 delays for 67 char"),
])
def test_usage_and_input_errors_exit_2(args, message):
    result = _run(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


LONG_LOG = DATA / "example_longform_instances.log"
LONG_SEGMENTS = DATA / "example_longform_segments.yaml"
LONG_REFERENCES = DATA / "example_longform_references.txt"


def test_long_form_prints_long_yaal_and_stream_laal():
    result = _run(LONG_LOG, "--segments", LONG_SEGMENTS, "--references", LONG_REFERENCES,
                  "--computation-aware", "--format", "json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert list(scores) == ["LongYAAL", "StreamLAAL", "LongYAAL_CA", "StreamLAAL_CA", "BLEU", "WER"]
    assert 0 < scores["LongYAAL"] < 3000 and 0 < scores["StreamLAAL"] < 3000


def test_long_form_reference_count_mismatch_is_reported(tmp_path):
    refs = tmp_path / "refs.txt"
    refs.write_text("only one line\n")
    result = _run(LONG_LOG, "--segments", LONG_SEGMENTS, "--references", refs)
    assert result.exit_code == 2
    assert "1 reference lines for 4 segments" in result.stderr
