"""The streaming server: protocol v1 (sans-I/O, ``protocol``), its limits (``settings``), the
WebSocket transport (``ws.StreamServer``), WebRTC (``webrtc``) and the browser page (``static/``).
docs/protocol.md is the spec. Importing this package loads no transport."""
