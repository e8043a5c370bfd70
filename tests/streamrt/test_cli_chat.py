"""``streamrt chat`` run with stdin piped: replies stream, the second turn sees the first."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from streamrt.cli import app
from tests.streamrt.llm_model import smollm2


@pytest.mark.model
def test_chat_answers_piped_turns_with_context():
    smollm2()  # skips, naming the package, where the packaged model is missing
    result = CliRunner().invoke(app, ["chat", "--precision", "fp32", "--max-new-tokens", "20"],
                                input="What is the capital of France?\nAnd of Italy?\n/quit\n")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines == ["The capital of France is Paris.", "The capital of Italy is Rome."]


def test_chat_refuses_bad_sampling_settings():
    result = CliRunner().invoke(app, ["chat", "--top-p", "0"])
    assert result.exit_code != 0 and "top_p" in result.output
