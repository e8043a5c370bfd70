"""The grid of a latency-quality sweep: policy x policy options x encoder mode x chunk size.

A grid file (YAML)::

    offline: true                       # also run the offline reference (default: true)
    encoders: [reencode, block-causal]  # default encoder modes of every policy entry
    chunk_ms: [500, 1000]               # default chunk sizes (ms of audio per step)
    settings: {max_tokens_per_s: 12}    # WhisperStreamSettings for every point (optional)
    encoder_settings: {left_frames: 500}  # make_encoder settings for every point (optional)
    policies:
      - name: local-agreement
        options: {n: 2}
        encoders: [reencode]            # per-entry override (optional)
        chunk_ms: [1000]                # per-entry override (optional)
      - name: alignatt
        options: {frames: [2, 4, 8]}    # a list sweeps the option (cross product over options)

Every point is checked before anything runs: unknown keys, wrong types, unknown encoder modes,
unknown policies and bad policy options raise ``ConfigError`` naming the file and the key.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from streamrt.encoders.factory import ENCODER_MODES
from streamrt.errors import ConfigError

TOP_KEYS = ("offline", "encoders", "chunk_ms", "settings", "encoder_settings", "policies")
POLICY_KEYS = ("name", "options", "encoders", "chunk_ms")
SHORT_POLICY = {"local-agreement": "la", "alignatt": "aa", "edatt": "ed", "streamatt": "sa", "wait-k": "wk"}


@dataclass(frozen=True)
class SweepPoint:
    """One streaming configuration of the sweep."""

    policy: str
    policy_options: tuple[tuple[str, Any], ...]
    encoder: str
    chunk_ms: int

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.policy_options)

    @property
    def name(self) -> str:
        """Folder name: e.g. ``la-n2_reencode_c1000``."""
        opts = "".join(f"-{k}{v}" for k, v in self.policy_options)
        raw = f"{SHORT_POLICY.get(self.policy, self.policy)}{opts}_{self.encoder}_c{self.chunk_ms}"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)

    @property
    def curve(self) -> str:
        """The latency-quality curve this point belongs to (policy x encoder)."""
        return f"{self.policy} / {self.encoder}"

    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.policy_options)
        return f"{self.policy}{'(' + opts + ')' if opts else ''} {self.encoder} {self.chunk_ms}ms"


@dataclass(frozen=True)
class SweepGrid:
    points: tuple[SweepPoint, ...]
    offline: bool = True
    settings: tuple[tuple[str, Any], ...] = ()  # WhisperStreamSettings overrides
    encoder_settings: tuple[tuple[str, Any], ...] = ()  # make_encoder settings


def make_point(policy: str, options: Mapping[str, Any], encoder: str, chunk_ms: int, *, where: str = "") -> SweepPoint:
    """A checked point: encoder mode known, chunk_ms > 0, policy installed and its options valid."""
    from policies import registry

    at = f"{where}: " if where else ""
    if encoder not in ENCODER_MODES:
        raise ConfigError(f"{at}unknown encoder mode {encoder!r}; known: {', '.join(ENCODER_MODES)}")
    if isinstance(chunk_ms, bool) or not isinstance(chunk_ms, int) or chunk_ms <= 0:
        raise ConfigError(f"{at}chunk_ms must be a positive whole number of ms, got {chunk_ms!r}")
    try:
        registry.create(policy, options)
    except ConfigError as e:
        raise type(e)(f"{at}{e.message}") if type(e) is ConfigError else ConfigError(f"{at}{e.message}") from None
    return SweepPoint(policy, tuple(sorted(options.items())), encoder, chunk_ms)


def points_from_lists(
    policies: Iterable[tuple[str, Mapping[str, Any]]], encoders: Iterable[str], chunks_ms: Iterable[int]
) -> list[SweepPoint]:
    """The cross product, in order policy, encoder, chunk."""
    return [make_point(p, o, e, c, where=f"{p} {e} {c} ms") for (p, o), e, c in
            itertools.product(list(policies), list(encoders), list(chunks_ms))]


def parse_policy_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME[:k=v,...]`` (command line) -> (name, options); numbers and booleans are typed."""
    name, _, rest = spec.partition(":")
    if not name.strip():
        raise ConfigError(f"--policy must look like NAME[:key=value,...], got {spec!r}")
    options: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--policy {spec!r}: option {pair!r} must look like key=value")
        options[key.strip()] = _typed(value.strip())
    return name.strip(), options


def _typed(value: str) -> Any:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def load_grid(path: str | Path) -> SweepGrid:
    """Read and check a YAML grid file (see the module docstring)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file {path} not found")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"grid file {path} is not valid YAML: {e}") from None
    return parse_grid(doc, source=str(path))


def parse_grid(doc: Any, *, source: str = "grid") -> SweepGrid:
    """Check a grid document (the parsed YAML) and expand it into points."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{source}: a grid must be a mapping with the keys {', '.join(TOP_KEYS)}")
    _known_keys(doc, TOP_KEYS, source)
    offline = doc.get("offline", True)
    if not isinstance(offline, bool):
        raise ConfigError(f"{source}: key 'offline' must be true or false, got {offline!r}")
    encoders = _str_list(doc.get("encoders", ["reencode"]), f"{source}: key 'encoders'")
    chunks = _int_list(doc.get("chunk_ms", [1000]), f"{source}: key 'chunk_ms'")
    settings = _mapping(doc.get("settings", {}), f"{source}: key 'settings'")
    enc_settings = _mapping(doc.get("encoder_settings", {}), f"{source}: key 'encoder_settings'")
    entries = doc.get("policies", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: key 'policies' must be a list of {{name, options, encoders, chunk_ms}}")
    points: list[SweepPoint] = []
    for i, entry in enumerate(entries):
        where = f"{source}: policies[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be a mapping with the keys {', '.join(POLICY_KEYS)}, got {entry!r}")
        _known_keys(entry, POLICY_KEYS, where)
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: key 'name' (the policy's name) is missing")
        options = _mapping(entry.get("options", {}), f"{where}: key 'options'")
        p_encoders = _str_list(entry.get("encoders", encoders), f"{where}: key 'encoders'")
        p_chunks = _int_list(entry.get("chunk_ms", chunks), f"{where}: key 'chunk_ms'")
        keys = list(options)
        values = [v if isinstance(v, list) else [v] for v in options.values()]
        for combo in itertools.product(*values):
            opts = dict(zip(keys, combo))
            for enc, chunk in itertools.product(p_encoders, p_chunks):
                points.append(make_point(name, opts, enc, chunk, where=f"{where} ({name} {opts} {enc} {chunk} ms)"))
    if not points and not offline:
        raise ConfigError(f"{source}: the grid has no points (add 'policies', or set 'offline: true')")
    return SweepGrid(tuple(dedupe(points)), offline, tuple(settings.items()), tuple(enc_settings.items()))


def grid_from_cli(path: str | Path | None, policy_specs: list[str], encoders: list[str], chunks_ms: list[int],
                  offline: bool | None) -> SweepGrid:
    """The grid file's points (if any) plus the command line's ``--policy`` x ``--encoder`` x
    ``--chunk-ms`` (defaults reencode, 1000 ms); ``offline`` None keeps the file's choice (else True)."""
    base = load_grid(path) if path else SweepGrid((), offline=True)
    if (encoders or chunks_ms) and not policy_specs:
        raise ConfigError("--encoder/--chunk-ms need at least one --policy")
    extra = points_from_lists([parse_policy_spec(p) for p in policy_specs], encoders or ["reencode"], chunks_ms or [1000])
    grid = SweepGrid(tuple(dedupe([*base.points, *extra])), base.offline if offline is None else offline,
                     base.settings, base.encoder_settings)
    if not grid.points and not grid.offline:
        raise ConfigError("nothing to run: give --grid or --policy, or --offline")
    return grid


def dedupe(points: Iterable[SweepPoint]) -> list[SweepPoint]:
    seen: set[SweepPoint] = set()
    return [p for p in points if not (p in seen or seen.add(p))]


def _known_keys(doc: Mapping, allowed: tuple[str, ...], where: str) -> None:
    for key in doc:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(allowed)}")


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping of option: value, got {value!r}")
    return {str(k): v for k, v in value.items()}


def _str_list(value: Any, what: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) for v in items):
        raise ConfigError(f"{what} must be a name or a non-empty list of names, got {value!r}")
    return items


def _int_list(value: Any, what: str) -> list[int]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items):
        raise ConfigError(f"{what} must be a positive whole number of ms or a non-empty list of them, got {value!r}")
    return items
