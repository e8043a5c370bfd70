"""Find turn-taking policies by name: the built-in ones plus any a package registers in the
entry-point group ``streamrt.turn_policies`` (``name = "module:Class"``, a ``TurnPolicy``)."""

from __future__ import annotations

from typing import Any, Mapping

from policies import entry_points
from policies.turn_taking.base import TurnPolicy
from streamrt.errors import PolicyOptionError

ENTRY_POINT_GROUP = "streamrt.turn_policies"

BUILTIN = {
    "silence": "policies.turn_taking.silence:Silence",
    "semantic": "policies.turn_taking.semantic:Semantic",
}


def available() -> dict[str, str]:
    """{name: "module:Class"} for every installed turn policy."""
    return dict(sorted(entry_points.targets(ENTRY_POINT_GROUP, BUILTIN).items()))


def load(name: str) -> type[TurnPolicy]:
    return entry_points.load_class(name, available(), TurnPolicy, "turn policy",
                                   "policies.turn_taking.TurnPolicy")


def create(name: str, options: Mapping[str, Any] | None = None) -> TurnPolicy:
    """A new policy (one per session); UnknownPolicyError / PolicyOptionError say what is wrong."""
    try:
        return load(name)(**dict(options or {}))
    except TypeError as e:
        raise PolicyOptionError(f"turn policy {name!r}: {e}") from None
