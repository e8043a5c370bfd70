"""Registries by name: built-in classes plus any a package registers in an entry-point group
(``name = "module:Class"``). Used by ``policies.registry`` (read/write policies) and
``policies.turn_taking.registry`` (turn-taking policies)."""

from __future__ import annotations

from importlib import import_module, metadata
from typing import Mapping

from streamrt.errors import ConfigError, UnknownPolicyError


def targets(group: str, builtin: Mapping[str, str]) -> dict[str, str]:
    """{name: "module:Class"}: the built-in ones, then the group's entry points (a built-in name wins)."""
    found = dict(builtin)
    for ep in metadata.entry_points(group=group):
        found.setdefault(ep.name, ep.value)
    return found


def load_class(name: str, found: Mapping[str, str], base: type, what: str, base_name: str) -> type:
    """The class registered as ``name`` in ``found``, checked to subclass ``base``; UnknownPolicyError
    for a name not there, ConfigError (naming ``what`` and ``base_name``) for one that cannot be used."""
    if name not in found:
        raise UnknownPolicyError(name, list(found))
    module, _, attr = found[name].partition(":")
    try:
        cls = getattr(import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{what} {name!r} is registered as {found[name]!r} but cannot be loaded: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{what} {name!r} ({found[name]}) is not a {base_name} subclass")
    return cls
