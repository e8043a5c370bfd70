import pytest

from policies import entry_points, registry
from policies.base import Policy, Read, Write
from streamrt.errors import ConfigError, PolicyOptionError, UnknownPolicyError


class Toy(Policy):
    name = "toy"
    options = {"k": (int, 2, "tokens held back"), "strict": (bool, False, "x"), "alpha": (float, 0.5, "y")}

    def validate(self):
        if self.k < 0:
            raise PolicyOptionError(f"k must be >= 0, got {self.k}")

    def decide(self, view):
        return Read()


def test_options_are_coerced_from_strings_like_cli_and_json_give_them():
    p = Toy(k="3", strict="true", alpha="0.25")
    assert (p.k, p.strict, p.alpha) == (3, True, 0.25)
    assert p.settings() == {"k": 3, "strict": True, "alpha": 0.25}


@pytest.mark.parametrize("opts,match", [
    ({"kk": 1}, "no option kk; its options: alpha, k, strict"),
    ({"k": "x"}, "option 'k' must be int"),
    ({"k": 1.5}, "option 'k' must be int"),
    ({"strict": "maybe"}, "option 'strict' must be bool"),
    ({"k": -1}, "k must be >= 0"),
])
def test_bad_options_name_the_problem(opts, match):
    with pytest.raises(PolicyOptionError, match=match):
        Toy(**opts)


def test_unknown_policy_lists_installed_ones():
    with pytest.raises(UnknownPolicyError) as e:
        registry.load("nope")
    assert "local-agreement" in str(e.value) and e.value.code == "unknown_policy"


def test_registry_lists_builtin_names():
    assert {"wait-k", "local-agreement", "alignatt", "edatt", "streamatt"} <= set(registry.available())


def test_entry_point_policy_is_found(monkeypatch):
    class EP:
        name, value = "toy", f"{__name__}:Toy"

    monkeypatch.setattr(entry_points.metadata, "entry_points", lambda group: [EP] if group == registry.ENTRY_POINT_GROUP else [])
    assert registry.create("toy", {"k": "1"}).k == 1


def test_registered_non_policy_is_refused(monkeypatch):
    class EP:
        name, value = "bad", "policies.base:Write"

    monkeypatch.setattr(entry_points.metadata, "entry_points", lambda group: [EP])
    with pytest.raises(ConfigError, match="not a policies.base.Policy"):
        registry.load("bad")


def test_write_is_a_frozen_action():
    w = Write(3, final=True)
    with pytest.raises(Exception):
        w.count = 4
