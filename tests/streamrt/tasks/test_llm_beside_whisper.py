"""Real Whisper tiny.en and the packaged SmolLM2 on one real Scheduler (virtual time): a real
recording is transcribed word for word as it is alone, and the chat's reply tokens equal the
decoder alone (issue 18: "chats through the scheduler beside live Whisper sessions")."""

from __future__ import annotations

import pytest

from streamrt.clock import ManualClock
from streamrt.scheduler import Scheduler, SchedulerSettings
from streamrt.session import Session
from streamrt.stream_session import StepOutput, StreamSession
from streamrt.tasks.llm_conversation import ConversationSettings, LlmConversationModel
from streamrt.types import TextDelta
from tests.streamrt.llm_model import smollm2
from tests.streamrt.scheduler.sched_helpers import Recorder, advance_to
from tests.streamrt.server.test_server_real_model import beckett_wav
from tests.streamrt.tasks.test_llm_conversation import GREEDY, QUESTION, _alone, _decoder

pytestmark = pytest.mark.model

CLIP_S = 4.0  # "Ever tried. Ever failed. No matter." and a little more
CHUNK_MS = 200
SETTINGS = SchedulerSettings(max_wait_ms=None, degrade_high_water_ms=None)


@pytest.fixture(scope="module")
def whisper():
    from streamrt.tasks.whisper_stream import WhisperStreamingModel

    return WhisperStreamingModel.from_pretrained("tiny.en")


@pytest.fixture(scope="module")
def clip():
    from streamrt.audio import load_audio

    return load_audio(beckett_wav(), 16000)[: int(CLIP_S * 16000)]


async def _run(whisper, clip, llm=None):
    """The clip streamed in real time (virtual) through one Scheduler; with ``llm``, a chat asks
    QUESTION 1 s in. Returns the recorder."""
    clock = ManualClock()
    sched = Scheduler(whisper, clock=clock, settings=SETTINGS)
    rec = Recorder()
    caption = Session(whisper.create_stream(), clock, session_id="asr")
    await sched.start()
    sched.add(caption, rec)
    chat = None
    if llm is not None:
        sched.add_model(llm, name="llm")
        chat = StreamSession(llm.create_stream(), clock, session_id="chat")
        sched.add(chat, rec, model=llm)
    step = CHUNK_MS * 16
    for k in range(0, len(clip), step):
        await advance_to(sched, clock, k / 16000)
        caption.receive_audio(clip[k: k + step])
        sched.wake(caption)
        if chat is not None and k == 16000:
            chat.receive(TextDelta(QUESTION, end_of_turn=True))
            sched.wake(chat)
    for s in (caption, chat) if chat is not None else (caption,):
        s.receive_eof()
        sched.wake(s)
    await sched.wait_idle()
    await sched.stop()
    return rec


async def test_whisper_transcript_and_chat_reply_beside_each_other_equal_each_alone(whisper, clip):
    alone = await _run(whisper, clip)
    llm = LlmConversationModel(smollm2(), _decoder(), ConversationSettings(sampling=GREEDY))
    both = await _run(whisper, clip, llm)

    words = alone.committed_words("asr")
    assert len(words) >= 5 and "Ever" in " ".join(words)
    assert both.committed_words("asr") == words and both.ended("asr")
    reply = [t for e in both.events["chat"] if isinstance(e, StepOutput) for t in e.result.tokens]
    assert reply == _alone(QUESTION) and both.ended("chat")
