"""The shared model the serving commands load (``serve``, ``serve --ray``, Ray replicas): its own
module, so that the commands and the Ray deployment import it without importing each other."""

from __future__ import annotations

from typing import Optional

import typer

from streamrt.errors import StreamrtError
from streamrt.presets import DEFAULT_PRESET


def load_model(name: str, fake: bool, preset: str = DEFAULT_PRESET, encoder_mode: Optional[str] = None,
               chunk_ms: Optional[int] = None, quantize: Optional[str] = None):
    """The shared model: Whisper streaming by name configured by ``preset`` (``streamrt.presets``), or
    the counting model (no weights) when ``fake``. ``encoder_mode``/``chunk_ms``/``quantize``
    override the preset's when given."""
    if fake:
        from streamrt.testing import CountingModel

        return CountingModel()
    from streamrt.presets import get_preset, load_model as load_preset_model

    try:
        config = get_preset(preset).with_overrides(encoder_mode=encoder_mode, chunk_ms=chunk_ms, quantize=quantize)
        return load_preset_model(name, config)
    except ImportError as e:
        raise typer.BadParameter(
            f"the Whisper streaming model is not available in this build ({e}); "
            "use --fake-model to run the server with the counting model",
            param_hint="--model",
        ) from None
    except StreamrtError as e:
        raise typer.BadParameter(e.message, param_hint="--model/--preset/--encoder-mode/--chunk-ms/--quantize") from None
