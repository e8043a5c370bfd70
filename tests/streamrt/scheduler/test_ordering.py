"""Which model's batch steps next (ordering.choose_candidate), with plain numbers."""

from streamrt.scheduler.ordering import Candidate, choose_candidate


def test_one_candidate_is_chosen_whatever_its_numbers():
    assert choose_candidate([Candidate(deadline=-5.0, priority=-1, step_s=9.0)], now=0.0) == 0


def test_with_slack_everywhere_priority_decides_then_the_deadline():
    asr = Candidate(deadline=1.0, priority=0, step_s=0.05)
    first_token = Candidate(deadline=2.0, priority=1, step_s=0.05)
    assert choose_candidate([asr, first_token], now=0.0) == 1
    decode = Candidate(deadline=0.8, priority=0, step_s=0.05)
    assert choose_candidate([asr, decode], now=0.0) == 1  # equal priority: earliest deadline


def test_a_candidate_that_would_miss_behind_another_step_goes_first():
    # slack after its own step: 1.0 - 0.9 - 0.05 = 0.05 s, less than the other's 0.1 s step
    asr = Candidate(deadline=1.0, priority=0, step_s=0.05)
    first_token = Candidate(deadline=1.5, priority=1, step_s=0.1)
    assert choose_candidate([asr, first_token], now=0.9) == 0
    assert choose_candidate([asr, first_token], now=0.8) == 1  # 0.15 s of slack: it can wait


def test_when_several_are_at_risk_the_earliest_deadline_goes_first():
    late = [Candidate(deadline=0.5, priority=0, step_s=0.2), Candidate(deadline=0.4, priority=2, step_s=0.2),
            Candidate(deadline=0.3, priority=0, step_s=0.2)]
    assert choose_candidate(late, now=0.35) == 2
