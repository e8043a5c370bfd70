"""The streaming server: protocol v1 (sans-I/O, ``protocol``), its limits (``settings``), what every
transport shares (``hub.SessionHub``, ``bridge``), the transports: the ASGI app (``asgi``; served by
uvicorn in ``asgi_server.AsgiServer``, what `streamrt serve` runs) and websockets (``ws.StreamServer``),
WebRTC (``webrtc``), the OpenAI-compatible HTTP API (``openai_api``, ``transcribe``) and the browser
page (``static/``). docs/protocol.md is the spec. Importing this package loads no transport."""
