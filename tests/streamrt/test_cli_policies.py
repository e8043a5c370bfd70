import json

from typer.testing import CliRunner

from streamrt.cli import app


def test_policies_lists_every_builtin_with_its_options():
    out = CliRunner().invoke(app, ["policies", "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.output)}
    assert set(rows) >= {"wait-k", "local-agreement", "alignatt", "edatt", "streamatt"}
    assert rows["wait-k"]["options"]["k"]["default"] == 3
    assert rows["edatt"]["options"]["alpha"]["default"] == 0.2


def test_policies_bad_format_is_a_clear_error():
    out = CliRunner().invoke(app, ["policies", "--format", "xml"])
    assert out.exit_code == 2 and "--format must be table or json" in out.output
