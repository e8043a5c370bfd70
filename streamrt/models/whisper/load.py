"""``load_whisper``: packaged names, local Hugging Face folders, and hub ids -> ``WhisperBundle``.

Packaged CTranslate2 weights are converted once into a Hugging Face checkpoint folder under
``<cache>/whisper/<name>-<key>/`` (model.safetensors, config.json, generation_config.json,
tokenizer.json, vocabulary file, streamrt.json); ``key`` hashes the source files' names, sizes and
mtimes plus the converter version, so an upgraded package is converted again. Every later load
reads that folder like any local checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from streamrt.errors import ModelLoadError
from streamrt.models.whisper.bundle import WhisperBundle
from streamrt.models.whisper.packages import PACKAGED, cache_root, locate, publish_dir
from streamrt.models.whisper.tokenizer import WhisperTokenizer, read_special_ids

HUB_CONNECT_TIMEOUT_S = 3.0  # how long to wait for the hub's host before failing a hub id
HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt"]
MULTILINGUAL_MIN_VOCAB = 51865
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def load_whisper(name: str, *, cache_dir: str | Path | None = None, device: str = "cpu") -> WhisperBundle:
    """Load a Whisper model by packaged name ("tiny.en", "base"), local folder, or hub id.

    - packaged names are converted on first use into the cache (``cache_dir``, else $STREAMRT_CACHE,
      else ~/.cache/streamrt) and loaded from there afterwards;
    - a folder holding a Hugging Face checkpoint (config.json, *.safetensors, tokenizer.json) is
      loaded with ``from_pretrained(local_files_only=True)``;
    - a hub id ("openai/whisper-small") is taken from the local Hugging Face cache, or downloaded if
      the hub answers within HUB_CONNECT_TIMEOUT_S and HF_HUB_OFFLINE is not set.
    Raises ModelLoadError naming the problem (missing pip package, unreadable file, no network).
    """
    if name in PACKAGED:
        folder = ensure_converted(name, cache_dir)
        return load_hf_dir(folder, name=name, device=device)
    path = Path(name).expanduser()
    if path.is_dir():
        return load_hf_dir(path, name=name, device=device)
    if path.exists():
        raise ModelLoadError(f"{path} is a file; pass the folder that holds config.json and the weights")
    if _HUB_ID.match(name):
        return load_hf_dir(resolve_hub_id(name), name=name, device=device)
    raise ModelLoadError(
        f"unknown Whisper model {name!r}: use one of {', '.join(PACKAGED)}, a local checkpoint folder, "
        "or a Hugging Face hub id such as 'openai/whisper-small'"
    )


@contextmanager
def _quiet_transformers():
    """No per-load progress bars from transformers (restored afterwards; loads are not concurrent)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def ensure_converted(name: str, cache_dir: str | Path | None = None) -> Path:
    """The cached checkpoint folder of packaged model ``name``, converting it first if needed."""
    files = locate(name)
    final = cache_root(cache_dir) / "whisper" / f"{name}-{files.key}"
    if (final / "streamrt.json").is_file():
        return final
    return publish_dir(lambda tmp: _convert_into(name, files, tmp), final)


def _convert_into(name: str, files, out: Path) -> None:
    from streamrt.models.whisper.convert import build_hf_model
    from streamrt.models.whisper.ct2 import parse_ct2_model

    start = time.perf_counter()
    ct2 = parse_ct2_model(files.read_model_bin(), " + ".join(str(p) for p in files.parts))
    special = read_special_ids(files.tokenizer)
    pkg = files.package_config()
    suppress = sorted(int(i) for i in pkg.get("suppress_ids", []))
    begin = sorted(int(i) for i in pkg.get("suppress_ids_begin", [])) or [220, special.eot]
    extra = dict(
        pad_token_id=special.eot,
        bos_token_id=special.eot,
        eos_token_id=special.eot,
        decoder_start_token_id=special.sot,
    )
    hf = build_hf_model(ct2, extra)
    with _quiet_transformers():
        hf.save_pretrained(out)
    multilingual = hf.config.vocab_size >= MULTILINGUAL_MIN_VOCAB
    gen_path = out / "generation_config.json"
    gen = json.loads(gen_path.read_text()) if gen_path.is_file() else {}
    gen.update(
        suppress_tokens=suppress,
        begin_suppress_tokens=begin,
        alignment_heads=[[int(a), int(b)] for a, b in pkg.get("alignment_heads", [])],
        is_multilingual=multilingual,
        no_timestamps_token_id=special.no_timestamps,
        lang_to_id={f"<|{k}|>": v for k, v in special.language_ids.items()} if multilingual else {},
        task_to_id={"transcribe": special.transcribe, "translate": special.translate},
        decoder_start_token_id=special.sot,
        eos_token_id=special.eot,
        pad_token_id=special.eot,
        max_length=hf.config.max_target_positions,
    )
    gen_path.write_text(json.dumps(gen, indent=1))
    for f in (files.tokenizer, files.vocabulary):
        if f is not None:
            shutil.copyfile(f, out / f.name)
    info = {
        "name": name,
        "key": files.key,
        "sources": [str(p) for p in (*files.parts, files.config, files.tokenizer)],
        "conversion_seconds": round(time.perf_counter() - start, 3),
        "parameters": int(hf.num_parameters()),
    }
    (out / "streamrt.json").write_text(json.dumps(info, indent=1))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: unreadable JSON: {exc}") from exc


def load_hf_dir(folder: str | Path, *, name: str | None = None, device: str = "cpu") -> WhisperBundle:
    """Load a local Hugging Face Whisper checkpoint folder (no network is touched)."""
    import torch
    from transformers import WhisperForConditionalGeneration

    folder = Path(folder)
    config = _read_json(folder / "config.json")
    if not config:
        raise ModelLoadError(f"{folder}: no config.json; not a Hugging Face checkpoint folder")
    if config.get("model_type") != "whisper":
        raise ModelLoadError(f"{folder}: config.json model_type is {config.get('model_type')!r}, not 'whisper'")
    tok_path = folder / "tokenizer.json"
    if not tok_path.is_file():
        raise ModelLoadError(
            f"{folder}: no tokenizer.json (the fast tokenizer file); save one with "
            "WhisperTokenizerFast.from_pretrained(...).save_pretrained(folder)"
        )
    try:
        with _quiet_transformers():
            model = WhisperForConditionalGeneration.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    except Exception as exc:  # transformers raises OSError/ValueError/EnvironmentError variants
        raise ModelLoadError(f"{folder}: cannot load the Whisper weights: {exc}") from exc
    model = model.to(device).eval()
    vocab_size = int(model.config.vocab_size)
    tokenizer = WhisperTokenizer.from_file(tok_path, vocab_size)
    sp = tokenizer.special
    gen = _read_json(folder / "generation_config.json")
    multilingual = bool(gen.get("is_multilingual", vocab_size >= MULTILINGUAL_MIN_VOCAB))
    listed = gen.get("suppress_tokens", config.get("suppress_tokens")) or []
    always = {sp.transcribe, sp.translate, sp.sot, sp.sot_prev, sp.sot_lm, sp.no_speech}
    suppress = tuple(sorted({int(i) for i in listed if int(i) >= 0} | always))
    begin = gen.get("begin_suppress_tokens", config.get("begin_suppress_tokens")) or [220, sp.eot]
    heads = tuple((int(a), int(b)) for a, b in gen.get("alignment_heads") or [])
    info = _read_json(folder / "streamrt.json")
    return WhisperBundle(
        model=model,
        tokenizer=tokenizer,
        name=name or folder.name,
        multilingual=multilingual,
        n_mels=int(model.config.num_mel_bins),
        sot=sp.sot,
        eot=sp.eot,
        no_timestamps=sp.no_timestamps,
        transcribe=sp.transcribe,
        translate=sp.translate,
        no_speech=sp.no_speech,
        timestamp_begin=sp.timestamp_begin,
        sot_prev=sp.sot_prev,
        sot_lm=sp.sot_lm,
        language_ids=dict(sp.language_ids) if multilingual else {},
        suppress_tokens=suppress,
        begin_suppress_tokens=tuple(sorted(int(i) for i in begin)),
        alignment_heads=heads,
        vocab_size=vocab_size,
        max_target_positions=int(model.config.max_target_positions),
        source=str(folder),
        info=info,
    )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _hub_reachable(timeout_s: float) -> tuple[bool, str]:
    """Open a TCP connection to the hub's host; DNS included, bounded by ``timeout_s``."""
    import socket

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    result: list[str] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            result.append("")
        except OSError as exc:
            result.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not result:
        return False, f"{host}:{port} did not answer within {timeout_s:g} s"
    return result[0] == "", result[0] and f"{host}:{port}: {result[0]}"


def resolve_hub_id(repo_id: str) -> Path:
    """Local snapshot folder of hub model ``repo_id`` (download only if the hub is reachable)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=HUB_ALLOW_PATTERNS))
    except Exception:  # not in the local HF cache
        pass
    advice = "download it where a network exists and pass the local folder to load_whisper"
    if _truthy(os.environ.get("HF_HUB_OFFLINE")):
        raise ModelLoadError(f"{repo_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; {advice}")
    ok, why = _hub_reachable(HUB_CONNECT_TIMEOUT_S)
    if not ok:
        raise ModelLoadError(f"{repo_id!r} is not in the local Hugging Face cache and the hub is unreachable ({why}); {advice}")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_ALLOW_PATTERNS))
    except Exception as exc:
        raise ModelLoadError(f"cannot download {repo_id!r} from the Hugging Face hub: {exc}") from exc
