"""``transcribe``: a file through a ``SessionHub`` as background work, on the counting model. Its
end of input goes once the model has worked the upload's backlog off, so the stream's last step is
no bigger than a live client's (a last step over the whole backlog lost the tail of two_cities at
the ladder's long chunks; docs/benchmarks.md, "HTTP uploads")."""

from __future__ import annotations

import numpy as np

from streamrt.server.hub import SessionHub
from streamrt.server.settings import ServerSettings
from streamrt.server.transcribe import transcribe
from streamrt.testing import CountingModel, CountingStream


class EofBacklogModel(CountingModel):
    """Records each stream's backlog (ms received but not consumed) when its input finished."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.backlog_at_eof: list[float] = []

    def create_stream(self, options=None):
        model = self

        class Stream(CountingStream):
            def input_finished(self) -> None:
                model.backlog_at_eof.append(self.received_ms - self.consumed_ms)
                super().input_finished()

        return Stream(self)


async def test_an_upload_ends_its_input_after_the_backlog_is_worked_off():
    model = EofBacklogModel(chunk_ms=200)
    hub = SessionHub(model, settings=ServerSettings(model_name="counting", upload_ahead_s=5.0))
    await hub.start_sessions()
    try:
        result = await transcribe(hub, np.zeros(16000 * 20, np.float32), {})
    finally:
        await hub.stop_sessions()
    assert result.text.split() == [f"w{i}" for i in range(40)]  # every word of the 20 s
    (backlog,) = model.backlog_at_eof
    assert backlog < model.chunk_ms  # less than one step left, not up to upload_ahead_s
