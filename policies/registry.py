"""Find policies by name: the built-in ones plus any a package registers in the entry-point group
``streamrt.policies`` (``name = "module:Class"``, the class a ``policies.base.Policy``)."""

from __future__ import annotations

from typing import Any, Mapping

from policies import entry_points
from policies.base import Policy

ENTRY_POINT_GROUP = "streamrt.policies"

BUILTIN = {
    "wait-k": "policies.wait_k:WaitK",
    "local-agreement": "policies.local_agreement:LocalAgreement",
    "alignatt": "policies.alignatt:AlignAtt",
    "edatt": "policies.edatt:EDAtt",
    "streamatt": "policies.streamatt:StreamAtt",
}


def _targets() -> dict[str, str]:
    return entry_points.targets(ENTRY_POINT_GROUP, BUILTIN)


def available() -> dict[str, str]:
    """{name: "module:Class"} for every installed policy."""
    return dict(sorted(_targets().items()))


def load(name: str) -> type[Policy]:
    return entry_points.load_class(name, _targets(), Policy, "policy", "policies.base.Policy")


def create(name: str, options: Mapping[str, Any] | None = None) -> Policy:
    """Instantiate a policy; raises UnknownPolicyError / PolicyOptionError with the details."""
    return load(name)(**dict(options or {}))
