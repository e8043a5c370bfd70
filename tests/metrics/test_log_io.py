"""instances.log reading and writing: round trip, and one clear error per kind of bad line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from metrics import Instance, read_instances, write_instances
from streamrt.errors import LogFormatError

GOOD = {"index": 0, "prediction": "a b", "delays": [100, 200], "elapsed": [150, 260],
        "prediction_length": 2, "reference": "A B", "source": ["x.wav"], "source_length": 1000}


def _log(tmp_path, *objs_or_lines):
    path = tmp_path / "instances.log"
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs_or_lines))
    return path


def test_write_then_read_round_trips(tmp_path):
    ins = [Instance(index=0, prediction="hello world", delays=[320.0, 640.0], elapsed=[400.5, 700.25],
                    source_length=1000.0, reference="Hello world.", source=["a.wav", "samplerate: 16000 Hz"],
                    prediction_length=2),
           Instance(index=1, prediction="", delays=[], source_length=500.0, prediction_length=0)]
    path = tmp_path / "out.log"
    write_instances(path, ins)
    assert read_instances(path) == ins
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == ["index", "prediction", "delays", "elapsed", "prediction_length",
                           "reference", "source", "source_length"]


def test_bundled_example_log_reads():
    path = Path(__file__).parents[2] / "metrics" / "data" / "example_instances.log"
    assert len(read_instances(path)) >= 5


@pytest.mark.parametrize("line, problem", [
    ('{"index": 0, "prediction": "a"', "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ({k: v for k, v in GOOD.items() if k != "delays"}, "missing field(s) 'delays'"),
    ({**GOOD, "delays": [100, 200, 300], "elapsed": [1, 2, 3]}, "delays are longer than the prediction: 3 delays for 2 word"),
    ({**GOOD, "delays": [100], "elapsed": [1]}, "delays are shorter than the prediction"),
    ({**GOOD, "delays": [200, 100]}, "delays are not monotonic: delays[1] = 100 < delays[0] = 200"),
    ({**GOOD, "delays": [-5, 100]}, "delays[0] = -5 is negative"),
    ({**GOOD, "delays": [100, "x"]}, "delays[1] is 'x', not a finite number"),
    ({**GOOD, "elapsed": [1]}, "'elapsed' has 1 entries but 'delays' has 2"),
    ({**GOOD, "source_length": 0}, "'source_length' must be a positive number"),
    ({**GOOD, "reference": 3}, "'reference' must be a string or null"),
    ({**GOOD, "index": "0"}, "'index' must be an integer"),
])
def test_bad_line_names_file_line_and_problem(tmp_path, line, problem):
    path = _log(tmp_path, GOOD | {"index": 5}, line)
    with pytest.raises(LogFormatError) as err:
        read_instances(path)
    assert err.value.line == 2
    assert problem in err.value.problem
    assert str(err.value).startswith(f"{path}:2: ")


def test_duplicate_index_is_an_error(tmp_path):
    with pytest.raises(LogFormatError, match="duplicate index 0 \\(first seen on line 1\\)"):
        read_instances(_log(tmp_path, GOOD, GOOD))


def test_non_utf8_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "instances.log"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"prediction": "\xff"}\n')
    with pytest.raises(LogFormatError, match=":2: not UTF-8 text"):
        read_instances(path)


def test_empty_log_is_an_error(tmp_path):
    with pytest.raises(LogFormatError, match="no instances"):
        read_instances(_log(tmp_path, ""))


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path):
    path = _log(tmp_path, GOOD, "", {**GOOD, "index": 1, "delays": [3, 1]})
    with pytest.raises(LogFormatError) as err:
        read_instances(path)
    assert err.value.line == 3


def test_char_unit_counts_characters_without_spaces_like_simuleval(tmp_path):
    path = _log(tmp_path, {**GOOD, "prediction": "abc", "delays": [1, 2, 3], "elapsed": [1, 2, 3]})
    assert len(read_instances(path, "char")[0].delays) == 3
    with pytest.raises(LogFormatError, match="longer than the prediction"):
        read_instances(path, "word")


def test_null_reference_means_no_reference(tmp_path):
    assert read_instances(_log(tmp_path, {**GOOD, "reference": None}))[0].reference is None


def test_importing_metrics_does_not_import_torch():
    code = "import sys, metrics, metrics.longform, metrics.quality; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
