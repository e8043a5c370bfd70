"""Find turn-taking policies by name: the built-in ones plus any a package registers in the
entry-point group ``streamrt.turn_policies`` (``name = "module:Class"``, a ``TurnPolicy``)."""

from __future__ import annotations

from importlib import import_module, metadata
from typing import Any, Mapping

from policies.turn_taking.base import TurnPolicy
from streamrt.errors import ConfigError, PolicyOptionError, UnknownPolicyError

ENTRY_POINT_GROUP = "streamrt.turn_policies"

BUILTIN = {
    "silence": "policies.turn_taking.silence:Silence",
    "semantic": "policies.turn_taking.semantic:Semantic",
}


def available() -> dict[str, str]:
    """{name: "module:Class"} for every installed turn policy."""
    found = dict(BUILTIN)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return dict(sorted(found.items()))


def load(name: str) -> type[TurnPolicy]:
    targets = available()
    if name not in targets:
        raise UnknownPolicyError(name, list(targets))
    module, _, attr = targets[name].partition(":")
    try:
        cls = getattr(import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"turn policy {name!r} is registered as {targets[name]!r} but cannot be loaded: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, TurnPolicy)):
        raise ConfigError(f"turn policy {name!r} ({targets[name]}) is not a policies.turn_taking.TurnPolicy subclass")
    return cls


def create(name: str, options: Mapping[str, Any] | None = None) -> TurnPolicy:
    """A new policy (one per session); UnknownPolicyError / PolicyOptionError say what is wrong."""
    try:
        return load(name)(**dict(options or {}))
    except TypeError as e:
        raise PolicyOptionError(f"turn policy {name!r}: {e}") from None
