"""Find policies by name: the built-in ones plus any a package registers in the entry-point group
``streamrt.policies`` (``name = "module:Class"``, the class a ``policies.base.Policy``)."""

from __future__ import annotations

from importlib import import_module, metadata
from typing import Any, Mapping

from policies.base import Policy
from streamrt.errors import ConfigError, UnknownPolicyError

ENTRY_POINT_GROUP = "streamrt.policies"

BUILTIN = {
    "wait-k": "policies.wait_k:WaitK",
    "local-agreement": "policies.local_agreement:LocalAgreement",
    "alignatt": "policies.alignatt:AlignAtt",
    "edatt": "policies.edatt:EDAtt",
    "streamatt": "policies.streamatt:StreamAtt",
}


def _targets() -> dict[str, str]:
    found = dict(BUILTIN)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def available() -> dict[str, str]:
    """{name: "module:Class"} for every installed policy."""
    return dict(sorted(_targets().items()))


def load(name: str) -> type[Policy]:
    targets = _targets()
    if name not in targets:
        raise UnknownPolicyError(name, list(targets))
    module, _, attr = targets[name].partition(":")
    try:
        cls = getattr(import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"policy {name!r} is registered as {targets[name]!r} but cannot be loaded: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Policy)):
        raise ConfigError(f"policy {name!r} ({targets[name]}) is not a policies.base.Policy subclass")
    return cls


def create(name: str, options: Mapping[str, Any] | None = None) -> Policy:
    """Instantiate a policy; raises UnknownPolicyError / PolicyOptionError with the details."""
    return load(name)(**dict(options or {}))
