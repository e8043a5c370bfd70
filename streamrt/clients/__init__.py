"""Clients of the streaming server: ``ws_client`` (protocol v1 over WebSocket), ``webrtc_client``
(aiortc), ``mic`` (sounddevice capture) and ``captions`` (live terminal captions)."""
