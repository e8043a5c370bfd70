"""What both WebRTC handlers (captions, ``streamrt.server.webrtc``; the voice agent,
``streamrt.server.webrtc_dialogue``) share: refusing on the signalling socket, and the data
channel as the bridge's message link."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from streamrt.server.protocol import close_code_for, error_message


async def refuse(ws: ServerConnection, code: str, message: str) -> None:
    try:
        await ws.send(json.dumps(error_message(code, message, True)))
        await ws.close(close_code_for(code), code)
    except ConnectionClosed:
        pass


class DataChannelLink:
    """send/close for the bridge over the data channel, with the channel's buffer as backpressure."""

    def __init__(self, pc, ws: ServerConnection, high_water_bytes: int):
        self.pc = pc
        self.ws = ws
        self.channel = None
        self.high_water_bytes = high_water_bytes

    async def send(self, text: str) -> None:
        if self.channel is None or self.channel.readyState != "open":
            raise ConnectionError("the data channel is not open")
        self.channel.send(text)
        while self.channel.bufferedAmount > self.high_water_bytes and self.channel.readyState == "open":
            await asyncio.sleep(0.01)

    async def close(self, code: int, reason: str) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            for _ in range(100):  # let SCTP take the last messages (end) before the channel goes
                if self.channel.bufferedAmount == 0:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            self.channel.close()
        try:
            await self.ws.close(code, reason)
        except ConnectionClosed:
            pass
