"""The HTTP/WebSocket front: the only package that imports FastAPI and uvicorn."""
