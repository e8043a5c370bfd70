"""Failure isolation of a batched step: the failing stream is found, every other one is stepped
exactly once, whether or not the exception names the stream."""

from __future__ import annotations

from collections import Counter

from streamrt.scheduler.isolation import step_isolating


class _Stream:
    def __init__(self, name: str):
        self.name = name


class _Model:
    """Steps a batch only if it holds no bad stream; raises naming the stream when ``named``."""

    def __init__(self, bad: set[str], named: bool):
        self.bad, self.named = bad, named
        self.stepped: Counter[str] = Counter()
        self.calls = 0

    def step(self, streams):
        self.calls += 1
        for s in streams:
            if s.name in self.bad:
                e = ValueError(f"bad {s.name}")
                if self.named:
                    e.stream = s
                raise e
        self.stepped.update(s.name for s in streams)


def test_a_batch_without_failures_is_one_step():
    streams = [_Stream(f"s{i}") for i in range(5)]
    model = _Model(set(), named=False)
    assert step_isolating(model, streams) == {} and model.calls == 1
    assert model.stepped == Counter({s.name: 1 for s in streams})


def test_unnamed_failures_are_found_by_bisection_and_the_rest_step_once():
    streams = [_Stream(f"s{i}") for i in range(8)]
    model = _Model({"s2", "s6"}, named=False)
    failures = step_isolating(model, streams)
    assert sorted(failures) == [2, 6] and "bad s2" in str(failures[2])
    assert model.stepped == Counter({s.name: 1 for s in streams if s.name not in ("s2", "s6")})


def test_a_named_failure_is_dropped_at_once():
    streams = [_Stream(f"s{i}") for i in range(8)]
    model = _Model({"s5"}, named=True)
    failures = step_isolating(model, streams)
    assert list(failures) == [5] and model.calls == 2  # the failed attempt, then the other seven together
    assert model.stepped == Counter({s.name: 1 for s in streams if s.name != "s5"})
