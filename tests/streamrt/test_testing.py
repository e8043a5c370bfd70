"""The counting model (streamrt/testing.py) as a long-running server uses it."""

from streamrt.testing import CountingModel


def test_counting_model_keeps_a_bounded_record_of_its_batch_sizes():
    # issue 17, item 10: the soak's slow RSS growth was this list, one entry per step forever
    model = CountingModel()
    for i in range(10_000):
        model.step([model.create_stream()] * (1 + i % 3))
    assert model.steps == 10_000
    assert len(model.batch_sizes) <= CountingModel.KEPT_BATCH_SIZES
    assert model.batch_sizes[-3:] == [1 + i % 3 for i in range(9_997, 10_000)]
