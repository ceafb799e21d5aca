"""`json_error_app`: the FastAPI app that both sharded services start from.

Its HTTP errors (unknown route, wrong method) are JSON `{"error": "<detail>: <method> <path>"}`
and `GET /healthz` answers `{"status": "ok"}`; each service adds `/v1/search` and `/readyz`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


def json_error_app(title: str) -> FastAPI:
    """A FastAPI app titled `title`, with JSON HTTP errors and `GET /healthz`."""
    app = FastAPI(title=title)

    @app.exception_handler(StarletteHTTPException)
    async def _http_exception(request: Request, exc: StarletteHTTPException):
        return JSONResponse(
            {"error": f"{exc.detail}: {request.method} {request.url.path}"},
            status_code=exc.status_code,
        )

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    return app
