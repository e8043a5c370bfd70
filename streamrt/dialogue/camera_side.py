"""The camera's side of a ``DialogueSession``: camera frames into a lip-activity stream on the
shared scheduler, its scores into a ``LipTimeline``, and what the user's lips show when a VAD
frame is judged (``UserSpeech``'s guard) and when the turn policy decides (``TurnView.lips``).
Without a camera (no ``receive_video``) every answer is "unknown" and the session is audio only.
A mixin of ``DialogueSession``, whose ``__init__`` sets the state it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from streamrt.dialogue.events import DialogueEvent, UserLipsEvent
from streamrt.errors import InputError, SessionClosed, StreamrtError
from streamrt.stream_session import StepOutput, StreamSession
from streamrt.types import VideoFrame

if TYPE_CHECKING:
    from streamrt.clock import Clock
    from streamrt.dialogue.models import DialogueModels, StepHost
    from streamrt.dialogue.settings import DialogueSettings
    from streamrt.dialogue.speech import UserSpeech
    from streamrt.tasks.lip_timeline import LipTimeline


class CameraSide:
    """The user's lips, from the camera's frames."""

    # set by DialogueSession.__init__
    id: str
    models: DialogueModels
    host: StepHost
    clock: Clock
    settings: DialogueSettings
    speech: UserSpeech
    video: StreamSession | None  # lip activity, from the first camera frame
    lips: LipTimeline
    _lips_came_at: float  # clock time lip scores last arrived
    _lips_lag_ms: float  # then: user audio received past the camera's next frame due (ms of media)
    _events: list[DialogueEvent]
    _eof: bool
    media_ms: float
    _on_output: Callable[[StreamSession], None]

    def _error(self, e: StreamrtError) -> None:  # DialogueSession's: an error event (fatal: end)
        raise NotImplementedError

    def _sub_event(self, e) -> None:  # DialogueSession's: a sub-session's error or end
        raise NotImplementedError

    def receive_video(self, frame: VideoFrame) -> None:
        """A camera frame, ``time_ms`` on the audio's media clock (ms from the first audio sample):
        to the lip-activity stream (opened at the first frame); errors become events."""
        try:
            if self._eof:
                raise SessionClosed("video after end of stream is ignored")
            if self.models.lips is None:
                raise InputError("this dialogue has no lip-activity model (DialogueModels.lips)",
                                 code="video_unavailable")
            if self.video is None:
                self.video = StreamSession(self.models.lips.create_stream(), self.clock, session_id=f"{self.id}-video")
                self.host.add(self.video, self._on_output, model=self.models.lips)
            self.video.receive(frame)
            self.host.wake(self.video)
        except StreamrtError as e:
            self._error(e)

    def _video_events(self) -> None:
        """The lip scores that came in: into the timeline (before the VAD frames they judge)."""
        for e in self.video.events() if self.video is not None else ():
            if isinstance(e, StepOutput):
                self.lips.add(e.result.lips)
                if e.result.lips:
                    self._lips_came_at = self.clock.now()
                    self._lips_lag_ms = self.media_ms - self.lips.next_due_ms
                    self._events.append(UserLipsEvent(tuple(e.result.lips), self.media_ms))
            else:
                self._sub_event(e)

    def _lips_in(self, scored_at: float) -> bool:
        """The next VAD frame (scored at ``scored_at`` on the clock) may be judged: no camera, the lip
        scores of its time are in, or ``lips_max_wait_ms`` is over (see ``DialogueSettings``)."""
        wait = self.settings.lips_max_wait_ms
        if self.video is None or self.settings.lips_window_ms is None or not wait or self._eof or self._lips_lag_ms > wait:
            return True  # (a camera further behind the audio than the wait is not waited for)
        if self.lips.covers((self.speech.frames + 1) * self.speech.frame_ms):
            return True
        now = self.clock.now()
        return 1000.0 * (now - scored_at) >= wait or 1000.0 * (now - self._lips_came_at) >= wait

    def _lips_until(self, end_ms: float) -> str:
        """The user's lips over the last ``lips_window_ms`` up to ``end_ms`` of media; unknown
        without a camera (then the session is audio only, exactly as without video)."""
        window = self.settings.lips_window_ms
        if self.video is None or window is None:
            return "unknown"
        return self.lips.state_between(end_ms - window, end_ms)

    def _lips_since_voice(self) -> str:
        """For the turn policy: the lips over the last ``lips_window_ms``, counting only frames at
        least that long after the user's voice stopped (a frame's lip score looks that far back, so
        earlier ones still see the words just spoken): "active" means the mouth moved after the
        voice stopped. Unknown while the user speaks, before that, and without a camera."""
        window, sp = self.settings.lips_window_ms, self.speech
        if self.video is None or window is None or sp.speaking or sp.silence_ms < window:
            return "unknown"
        return self.lips.state_between(max(sp.now_ms - window, sp.end_ms + window), sp.now_ms)
