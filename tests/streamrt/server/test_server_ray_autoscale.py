"""The busy-fraction autoscaling policy, on numbers (no Ray cluster)."""

from types import SimpleNamespace

import pytest

from streamrt.server.ray_autoscale import BusyFractionPolicy, desired_replicas


def _ctx(current, **metrics):
    return SimpleNamespace(current_num_replicas=current, aggregated_metrics=metrics)


def test_replicas_follow_the_summed_busy_fraction():
    policy = BusyFractionPolicy(target_busy_fraction=0.5, max_sessions=64)
    # two replicas 90 % busy: 1.8 of work at 0.5 each needs 4
    assert policy(_ctx(2, busy_fraction={"a": 0.9, "b": 0.9}, sessions={"a": 3, "b": 3}))[0] == 4
    # two replicas 20 % busy: 0.4 fits in one
    assert policy(_ctx(2, busy_fraction={"a": 0.2, "b": 0.2}, sessions={"a": 1, "b": 1}))[0] == 1
    # exactly on target: stays
    assert policy(_ctx(2, busy_fraction={"a": 0.5, "b": 0.5}))[0] == 2


def test_sessions_and_saturation_also_add_replicas():
    # idle-looking model but many sessions: 100 sessions at 0.5 * 64 per replica need 4
    assert desired_replicas(2, {"busy_fraction": {"a": 0.1, "b": 0.1}, "sessions": {"a": 50, "b": 50}},
                            target_busy_fraction=0.5, max_sessions=64) == 4
    # a saturated replica refuses sessions: one more than now, whatever the busy fraction says
    assert desired_replicas(2, {"busy_fraction": {"a": 0.3, "b": 0.3}, "saturated": {"a": 0.0, "b": 1.0}},
                            target_busy_fraction=0.7, max_sessions=None) == 3


def test_no_reports_yet_keeps_the_count():
    assert desired_replicas(3, {}, target_busy_fraction=0.7, max_sessions=64) == 3


def test_bad_target_names_the_setting():
    with pytest.raises(ValueError, match="target_busy_fraction must be in"):
        BusyFractionPolicy(target_busy_fraction=0)
