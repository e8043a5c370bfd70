"""The voice agent: a sans-I/O dialogue session that routes user audio through VAD and streaming
ASR into an LLM conversation, the LLM's tokens into TTS and TTS audio out, with turn-taking and
barge-in. See ``streamrt.dialogue.events`` for what it emits."""
