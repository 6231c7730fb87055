"""HTTP error answers in OpenAI's shape, so clients of that API handle ours unchanged."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


def error_body(code: str, message: str) -> dict[str, Any]:
    """`{"error": {"code", "message"}}`: the SDKs read `code` and `message` from it."""
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)
