"""One service process over a whole sharded index: `mrl serve --model M --index SHARDED`.

All shards are loaded (`ShardedIndex`), each is searched on its own thread and the results are
merged exactly (`ShardedRetriever`, `merge_topk`). `POST /v1/search` takes `instances` (model
inputs, embedded once at `D_r` by the backend) or `embeddings`, with `k`, `shortlist_size`,
`rerank_dim`, `funnel`, `leaves_to_search`, `shortlist_reorder` and `exact` (every leaf, whole shards shortlisted,
rerank at `D_r`); `GET /healthz`, `GET /readyz`. JSON errors: 400 bad input, 413 too large,
503 backend unavailable.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from mrl_keras.serving.backends.errors import BackendError
from mrl_keras.serving.service import schema
from mrl_keras.serving.service.json_error_app import json_error_app

__all__ = ["create_sharded_app"]

FIELDS = (
    "instances",
    "embeddings",
    "k",
    "shortlist_size",
    "rerank_dim",
    "funnel",
    "leaves_to_search",
    "shortlist_reorder",
    "exact",
    "timeout",
)


def _search(retriever, body: Any, max_batch: int) -> dict[str, Any]:
    body = schema.check_fields(body, FIELDS)
    if ("instances" in body) == ("embeddings" in body):
        raise ValueError("Expected exactly one of instances or embeddings.")
    exact = body.get("exact", False)
    if not isinstance(exact, bool):
        raise TypeError(f"Expected exact to be true or false. Received {exact!r}")
    options = {
        "exact": exact,
        "shortlist_size": schema.optional_int(body, "shortlist_size"),
        "rerank_dim": schema.optional_int(body, "rerank_dim"),
        "funnel": body.get("funnel"),
        "leaves_to_search": schema.optional_int(body, "leaves_to_search"),
        "shortlist_reorder": schema.optional_int(body, "shortlist_reorder"),
    }
    k = body.get("k", 10)
    if "embeddings" in body:
        result = retriever.search_embeddings(
            schema.numeric_batch("embeddings", body["embeddings"], max_batch), k, **options
        )
        model_version = None
    else:
        info = retriever.backend.info()
        x = schema.check_instances_shape(
            schema.numeric_batch("instances", body["instances"], max_batch),
            info.input_shape,
            info.input_dtype,
        )
        result = retriever.search(x, k, **options)
        model_version = info.version
    return {
        "results": [
            {"ids": i, "scores": s}
            for i, s in zip(
                schema.json_ids(result.ids), schema.json_scores(result.scores), strict=True
            )
        ],
        "model_version": model_version,
        "index_version": retriever.index.index_version,
        "shards": len(retriever.index.shards),
    }


def create_sharded_app(
    retriever, *, max_body_bytes: int = 32 << 20, max_batch: int = 1024
) -> FastAPI:
    """The FastAPI app over a `ShardedRetriever` (with a backend for `instances`)."""
    app = json_error_app("mrl sharded search (one process)")

    @app.post("/v1/search")
    async def search(request: Request):
        raw = await request.body()
        if len(raw) > max_body_bytes:
            return JSONResponse(
                {"error": f"Request body over {max_body_bytes} bytes."}, status_code=413
            )
        try:
            body = json.loads(raw)
            out = await asyncio.get_running_loop().run_in_executor(
                None, _search, retriever, body, max_batch
            )
            return JSONResponse(out)
        except schema.BatchTooLarge as e:
            return JSONResponse({"error": str(e)}, status_code=413)
        except BackendError as e:
            return JSONResponse(
                {"error": f"backend unavailable ({e.code}): {e.message}"}, status_code=503
            )
        except (ValueError, TypeError, UnicodeDecodeError) as e:
            return JSONResponse({"error": str(e)}, status_code=400)

    @app.get("/readyz")
    async def readyz():
        index = retriever.index
        details = {
            "index_loaded": True,
            "index_version": index.index_version,
            "index_count": index.count,
            "shards": len(index.shards),
            "index_model_version": index.model_version,
        }
        if retriever.backend is not None:
            status = await asyncio.get_running_loop().run_in_executor(
                None, retriever.backend.status
            )
            details["backend_state"] = status.state
            if status.state != "AVAILABLE":
                return JSONResponse(
                    dict(details, ready=False, error=f"not ready: backend state is {status.state}"),
                    status_code=503,
                )
        return JSONResponse(dict(details, ready=True))

    return app
