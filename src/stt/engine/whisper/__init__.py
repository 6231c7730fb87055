"""The embedded CPU engine: faster-whisper made streaming; the only package that imports it."""
