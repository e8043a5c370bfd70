"""A WebSocket message over the size limit, answered by the protocol instead of a bare close 1009.

websockets' frame parser reads a frame's length from its header and, past ``max_size``, fails the
connection at once (close 1009): the client gets no ``error``, no ``end`` and loses its last words
(issue 17, item 5). ``parse_skipping_oversize`` replaces that parser on one connection once its
opening handshake is done. It is websockets' own loop (``Protocol.parse``, websockets 14 to 17), with
one change: the payload of a data frame past the limit is read and thrown away as it arrives (never
buffered, so memory stays bounded whatever length the header claims), as are the later fragments of
its message; the application gets one marker message in its place. ``StreamConnection`` turns the
marker into ``streamrt.server.hub.Dropped(size)``, and the protocol answers ``message_too_big`` naming the limit, stops
the session, commits, sends ``end`` and closes 1009 (docs/protocol.md).

The marker is a data frame with reserved bits 2 and 3 set, which no frame from a client can carry
here (no extension is negotiated, and ``Frame.check`` refuses reserved bits on every real frame).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator

from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Protocol


def is_marker(frame: Frame) -> bool:
    return frame.rsv2 and frame.rsv3


def _skip(proto: Protocol, n: int) -> Generator[None]:
    """Consume ``n`` bytes from the stream as they arrive, keeping none."""
    reader = proto.reader
    while n > 0:
        if not reader.buffer:
            if reader.eof:
                raise EOFError(f"stream ends {n} bytes before the end of an oversize frame")
            yield
            continue
        k = min(n, len(reader.buffer))
        del reader.buffer[:k]
        n -= k


def parse_skipping_oversize(proto: Protocol, dropped_sizes: deque[int]) -> Generator[None]:
    """``proto.parser`` for an open connection: websockets' parse loop, but a data frame past
    ``proto.max_message_size`` (counting the fragments before it) is skipped; the size of what was
    dropped goes to ``dropped_sizes`` and a marker frame is handed to ``proto.recv_frame``."""
    limit = proto.max_message_size
    skipping = False  # inside a fragmented message whose rest is being thrown away
    try:
        while True:
            if (yield from proto.reader.at_eof()):
                raise EOFError("unexpected end of stream")
            head = proto.reader.buffer[0]  # at_eof() returned False: at least one byte is here
            data_frame = (head & 0x0F) in (Opcode.CONT, Opcode.TEXT, Opcode.BINARY)
            max_size = None
            if data_frame and limit is not None:
                max_size = 0 if skipping else limit - (proto.current_size or 0)
            try:
                frame = yield from Frame.parse(
                    proto.reader.read_exact, mask=True, max_size=max_size, extensions=proto.extensions
                )
            except PayloadTooBig as exc:
                assert exc.size is not None
                yield from _skip(proto, 4 + exc.size)  # the mask key, then the payload
                fin, opcode = bool(head & 0x80), Opcode(head & 0x0F)
                if not skipping:
                    dropped_sizes.append((proto.current_size or 0) + exc.size)
                    # the marker ends the message for websockets (a fragment's start, or a whole one)
                    kind = Opcode.CONT if proto.current_size is not None else opcode
                    proto.recv_frame(Frame(kind, b"", True, False, True, True))
                skipping = not fin
                continue
            if skipping and frame.opcode is Opcode.CONT:
                skipping = not frame.fin  # an empty fragment of the dropped message
                continue
            proto.recv_frame(frame)
    except ProtocolError as exc:
        proto.fail(CloseCode.PROTOCOL_ERROR, str(exc))
        proto.parser_exc = exc
    except EOFError as exc:
        proto.fail(CloseCode.ABNORMAL_CLOSURE, str(exc))
        proto.parser_exc = exc
    except Exception as exc:
        proto.logger.error("parser failed", exc_info=True)
        proto.fail(CloseCode.INTERNAL_ERROR)
        proto.parser_exc = exc
    yield
    raise AssertionError("parse() shouldn't step after error")

