// WebSocket placeholder
