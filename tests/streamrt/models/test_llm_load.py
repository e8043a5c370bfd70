"""load_llm: the packaged GGUF converted once into a cached float32 folder that loads like any Hugging
Face causal-LM folder, with its chat template and end-of-turn token; clear errors otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamrt.errors import ModelLoadError
from streamrt.models.llm import load_llm
from streamrt.models.llm.load import ensure_converted
from tests.streamrt.llm_model import smollm2


@pytest.mark.model
def test_packaged_gguf_is_cached_as_safetensors_and_loads_as_a_folder():
    bundle = smollm2()
    folder = Path(bundle.source)
    assert (folder / "model.safetensors").is_file() and bundle.gguf.endswith(".gguf")
    assert json.loads((folder / "streamrt.json").read_text())["parameters"] > 100_000_000
    assert ensure_converted("smollm2-135m") == folder  # converted once, then found by its key
    again = load_llm(str(folder))
    assert again.end_token_ids == bundle.end_token_ids == (2,)  # <|im_end|>
    ids = again.chat_ids([{"role": "user", "content": "Hi"}])
    assert again.decode(ids).endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_unknown_name_and_non_checkpoint_folder_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="unknown LLM 'nope'.*smollm2-135m"):
        load_llm("nope")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_llm(str(tmp_path))
