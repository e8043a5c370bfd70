"""The counting model (streamrt/testing.py) as a long-running server uses it."""

from streamrt.testing import CountingModel
from streamrt.types import TextDelta


def test_counting_model_keeps_a_bounded_record_of_its_batch_sizes():
    # issue 17, item 10: the soak's slow RSS growth was this list, one entry per step forever
    model = CountingModel()
    for i in range(10_000):
        model.step([model.create_stream()] * (1 + i % 3))
    assert model.steps == 10_000
    assert len(model.batch_sizes) <= CountingModel.KEPT_BATCH_SIZES
    assert model.batch_sizes[-3:] == [1 + i % 3 for i in range(9_997, 10_000)]


def test_tone_tts_speaks_clause_by_clause_with_units_at_their_output_positions():
    from streamrt.testing import ToneTtsModel

    tts = ToneTtsModel(word_ms=100, sample_rate=8000)
    s = tts.create_stream()
    s.accept(TextDelta("Hello there, how"))
    assert s.is_ready()
    tts.step([s])
    first = s.pop_result()
    assert [u.text for u in first.committed] == ["Hello there,"] and len(first.audio) == 1600
    assert not s.is_ready() and not s.is_done()  # "how" waits for the rest of its clause
    s.accept(TextDelta(" are you", end_of_turn=True))
    tts.step([s])
    rest = s.pop_result()
    assert [(u.text, u.start_ms, u.end_ms) for u in rest.committed] == [("how are you", 200.0, 500.0)]
    assert s.is_done()
    s2 = tts.create_stream()
    s2.accept(TextDelta("Never said. Not this"))
    s2.cancel()
    assert s2.is_done() and not s2.is_ready()
