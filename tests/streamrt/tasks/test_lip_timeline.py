"""LipTimeline: the lips over a span of media time, for fusing with audio VAD (active / still /
unknown, where unknown means no evidence: no camera, no face, frames missing)."""

import pytest

from streamrt.errors import ConfigError
from streamrt.tasks.lip_timeline import LipTimeline
from streamrt.types import LipActivity


def frames(start, end, step, active):
    return [LipActivity(float(t), None if active is None else (0.9 if active else 0.1), active)
            for t in range(start, end, step)]


def test_still_only_when_seen_over_the_whole_span():
    tl = LipTimeline()
    tl.add(frames(0, 2000, 40, False))
    assert tl.state_between(500, 1500) == "still"
    assert tl.state_between(500, 2600) == "unknown"  # the camera stopped at 1960 ms
    assert LipTimeline().state_between(0, 100) == "unknown"  # no camera at all


def test_any_moving_frame_makes_the_span_active():
    tl = LipTimeline()
    tl.add(frames(0, 1000, 40, False) + frames(1000, 1100, 40, True) + frames(1100, 2000, 40, False))
    assert tl.state_between(900, 1500) == "active" and tl.state_between(1200, 1900) == "still"


def test_no_face_or_a_gap_is_unknown_not_still():
    tl = LipTimeline(max_gap_ms=300)
    tl.add(frames(0, 1000, 40, False) + frames(1000, 1500, 40, None) + frames(1500, 2500, 40, False))
    assert tl.state_between(800, 1800) == "unknown"
    gap = LipTimeline(max_gap_ms=300)
    gap.add(frames(0, 1000, 40, False) + frames(1500, 2500, 40, False))
    assert gap.state_between(800, 1800) == "unknown" and gap.state_between(1600, 2400) == "still"


def test_history_is_bounded_and_settings_are_checked():
    tl = LipTimeline(keep_ms=1000)
    tl.add(frames(0, 5000, 40, False))
    assert tl.state_between(0, 3000) == "unknown" and tl.state_between(4200, 4900) == "still"
    assert tl.latest_ms == 4960
    with pytest.raises(ConfigError, match="max_gap_ms"):
        LipTimeline(max_gap_ms=0)


def test_covers_says_whether_the_frames_of_a_time_are_all_in():
    tl = LipTimeline()
    assert not tl.covers(0.0) and tl.next_due_ms is None  # nothing yet: a frame may still come
    tl.add(frames(0, 400, 66, False))  # 15 fps: 0 .. 396
    assert tl.next_due_ms == 396 + 66
    assert tl.covers(396) and tl.covers(460)  # the next frame (462) is not due yet
    assert not tl.covers(470)  # the frame of 462 should be here: it is late
    slow = LipTimeline(max_gap_ms=300)
    slow.add(frames(0, 2000, 1000, False))  # 1 fps: at most max_gap_ms ahead
    assert slow.next_due_ms == 1000 + 300


def test_the_frame_interval_is_the_cameras_rate_over_the_last_two_seconds_drops_included():
    timeline = LipTimeline()
    assert timeline.frame_interval_ms is None
    timeline.add([LipActivity(0.0, 0.0, False)])
    assert timeline.frame_interval_ms is None
    timeline.add([LipActivity(t, 0.0, False) for t in (200.0, 400.0, 800.0, 1000.0)])  # 600 lost
    assert timeline.frame_interval_ms == pytest.approx(250.0)
    timeline.add([LipActivity(10_000.0 + 1000 / 15 * i, 0.0, False) for i in range(60)])  # then 15 fps
    assert timeline.frame_interval_ms == pytest.approx(1000 / 15)
