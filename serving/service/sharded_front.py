"""The fan-out front of a sharded index: `mrl serve --shards URL,URL,...`.

Each shard is an ordinary `mrl serve` over one index shard (`serving/retrieval/sharded.py`).
`POST /v1/search` sends the request to every shard at once (`k`, `shortlist_size` and
`shortlist_reorder` capped at the shard's size, read once from its `/readyz`; `"shortlist_size"` of the whole corpus on
shards whose ScaNN searches every leaf is the exact search), waits until the request's deadline, and merges the shards'
top-k exactly (`merge_topk`: score descending, then id ascending). A shard that is down, too
slow or failing makes the request fail with 503 naming it, unless the request says
`"allow_partial": true`: then the merge of the shards that answered comes back with
`"partial": true` and `"missing_shards"` listing the others. A 400 from a shard (bad request)
is passed through. `GET /healthz`, `GET /readyz` (every shard ready).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse

from mrl_keras.serving.retrieval.sharded import merge_topk
from mrl_keras.serving.service.json_error_app import json_error_app

__all__ = ["FrontConfig", "ShardUnavailable", "ShardedFront", "create_front_app"]


class ShardUnavailable(Exception):
    def __init__(self, shard: int, url: str, reason: str):
        super().__init__(f"shard {shard} ({url}) unavailable: {reason}")
        self.shard, self.url, self.reason = shard, url, reason


class FrontError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class FrontConfig:
    def __init__(
        self,
        timeout: float = 5.0,
        max_timeout: float = 60.0,
        max_body_bytes: int = 32 << 20,
        auth_token: str | None = None,
    ):
        if not timeout > 0 or not max_timeout >= timeout:
            raise ValueError(
                f"Expected 0 < timeout <= max_timeout. Received {timeout}, {max_timeout}"
            )
        self.timeout, self.max_timeout = float(timeout), float(max_timeout)
        self.max_body_bytes, self.auth_token = int(max_body_bytes), auth_token


class ShardedFront:
    """Fans a search out to shard services and merges exactly (see the module docstring)."""

    def __init__(self, shard_urls: list[str], config: FrontConfig | None = None):
        urls = [u.strip().rstrip("/") for u in shard_urls if u.strip()]
        if not urls:
            raise ValueError("Expected at least one shard URL (--shards URL,URL,...).")
        bad = [u for u in urls if not u.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(
                f"Expected shard URLs starting with http:// or https://. Received {bad[0]!r}"
            )
        if len(set(urls)) != len(urls):
            raise ValueError("Expected distinct shard URLs (one per shard).")
        self.urls, self.config = urls, config or FrontConfig()
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(4 * len(urls), thread_name_prefix="mrl-front")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _headers(self) -> dict[str, str]:
        token = self.config.auth_token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _count(self, i: int, deadline: float) -> int:
        import requests

        url = self.urls[i]
        with self._lock:
            if url in self._counts:
                return self._counts[url]
        try:
            r = requests.get(f"{url}/readyz", timeout=max(0.01, deadline - time.monotonic()))
            details = r.json()
        except (requests.RequestException, ValueError) as e:
            raise ShardUnavailable(i, url, f"{type(e).__name__}: {e}") from e
        if r.status_code != 200 or "index_count" not in details:
            raise ShardUnavailable(
                i, url, details.get("error") or f"/readyz answered {r.status_code}"
            )
        with self._lock:
            self._counts[url] = int(details["index_count"])
        return self._counts[url]

    def _ask(self, i: int, body: dict[str, Any], k: int, deadline: float) -> dict[str, Any]:
        import requests

        url = self.urls[i]
        count = self._count(i, deadline)
        shard_body = dict(body, k=min(k, count), timeout=max(0.01, deadline - time.monotonic()))
        size = body.get("shortlist_size")
        if isinstance(size, int) and not isinstance(size, bool):  # a shard holds `count` at most
            shard_body["shortlist_size"] = max(shard_body["k"], min(size, count))
        reorder = body.get("shortlist_reorder")
        if isinstance(reorder, int) and not isinstance(reorder, bool):
            asked = size if isinstance(size, int) and not isinstance(size, bool) else None
            if asked is None or reorder >= asked:  # else the shard says why it is too small
                floor = shard_body["shortlist_size"] if asked is not None else 0
                shard_body["shortlist_reorder"] = max(floor, min(reorder, count))
        try:
            r = requests.post(
                f"{url}/v1/search",
                json=shard_body,
                headers=self._headers(),
                timeout=max(0.01, deadline - time.monotonic()),
            )
        except requests.RequestException as e:
            raise ShardUnavailable(i, url, f"{type(e).__name__}: {e}") from e
        try:
            payload = r.json()
        except ValueError:
            payload = {"error": r.text[:200]}
        if r.status_code in (400, 413):
            raise FrontError(r.status_code, f"shard {i} ({url}): {payload.get('error')}")
        if r.status_code != 200:
            raise ShardUnavailable(i, url, f"HTTP {r.status_code}: {payload.get('error')}")
        return payload

    def search(self, body: Any) -> dict[str, Any]:
        """One `/v1/search` request body -> the merged response. Raises FrontError (4xx/503)."""
        if not isinstance(body, dict):
            raise FrontError(400, "Expected a JSON object body.")
        body = dict(body)
        allow_partial = body.pop("allow_partial", False)
        if not isinstance(allow_partial, bool):
            raise FrontError(
                400, f"Expected allow_partial to be true or false. Received {allow_partial!r}"
            )
        k = body.get("k", 10)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise FrontError(400, f"Expected an int k >= 1. Received {k!r}")
        timeout = body.pop("timeout", self.config.timeout)
        if (
            not isinstance(timeout, (int, float))
            or isinstance(timeout, bool)
            or not 0 < timeout <= self.config.max_timeout
        ):
            raise FrontError(
                400, f"Expected 0 < timeout <= {self.config.max_timeout:g}. Received {timeout!r}"
            )
        deadline = time.monotonic() + float(timeout)
        futures = [
            self._pool.submit(self._ask, i, body, k, deadline) for i in range(len(self.urls))
        ]
        answers: list[dict[str, Any] | None] = []
        missing: list[dict[str, Any]] = []
        for i, f in enumerate(futures):
            try:
                answers.append(f.result(timeout=max(0.0, deadline - time.monotonic()) + 0.5))
            except ShardUnavailable as e:
                answers.append(None)
                missing.append({"shard": i, "url": e.url, "error": e.reason})
            except TimeoutError:
                answers.append(None)
                missing.append(
                    {"shard": i, "url": self.urls[i], "error": f"no answer within {timeout:g} s"}
                )
        if missing and not allow_partial:
            first = missing[0]
            raise FrontError(
                503,
                f"shard {first['shard']} ({first['url']}) unavailable: {first['error']}"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + "; pass allow_partial for the other shards' results",
            )
        got = [a for a in answers if a is not None]
        if not got:
            raise FrontError(503, "no shard answered: " + "; ".join(m["error"] for m in missing))
        n = len(got[0]["results"])
        results = []
        for q in range(n):
            ids, scores = [], []
            for a in got:
                r = a["results"][q]
                ids.append(np.asarray([r["ids"]]))
                scores.append(
                    np.asarray([[-math.inf if s is None else s for s in r["scores"]]], np.float32)
                )
            kinds = {x.dtype.kind for x in ids if x.size}
            if len(kinds) > 1:
                raise FrontError(
                    503, "shards return ids of different types (int and str): not one sharded index"
                )
            ids = [x.astype(np.int64) if x.size == 0 and kinds == {"i"} else x for x in ids]
            merged_ids, merged_scores = merge_topk(ids, scores, k)
            results.append({"ids": merged_ids[0].tolist(), "scores": merged_scores[0].tolist()})
        versions = sorted({str(a.get("index_version")) for a in got})
        model_versions = sorted({a.get("model_version") for a in got}, key=str)
        return {
            "results": results,
            "model_version": model_versions[0] if len(model_versions) == 1 else model_versions,
            "index_version": versions[0] if len(versions) == 1 else versions,
            "shards": len(self.urls),
            "partial": bool(missing),
            "missing_shards": missing,
        }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        import requests

        shards = []
        for i, url in enumerate(self.urls):
            try:
                r = requests.get(f"{url}/readyz", timeout=self.config.timeout)
                shards.append({"shard": i, "url": url, "ready": r.status_code == 200})
            except requests.RequestException as e:
                shards.append({"shard": i, "url": url, "ready": False, "error": str(e)})
        ready = all(s["ready"] for s in shards)
        return ready, {"ready": ready, "shards": shards}


def create_front_app(front: ShardedFront):
    """The FastAPI app of the front: /v1/search, /healthz, /readyz; JSON errors."""
    app = json_error_app("mrl sharded search front")

    @app.post("/v1/search")
    async def search(request: Request):
        token = front.config.auth_token
        if token and request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"error": "Missing or wrong bearer token."}, status_code=401)
        raw = await request.body()
        if len(raw) > front.config.max_body_bytes:
            return JSONResponse(
                {"error": f"Request body over {front.config.max_body_bytes} bytes."},
                status_code=413,
            )
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            return JSONResponse({"error": f"Expected a JSON body: {e}"}, status_code=400)
        try:
            return JSONResponse(
                await asyncio.get_running_loop().run_in_executor(None, front.search, body)
            )
        except FrontError as e:
            return JSONResponse({"error": e.message}, status_code=e.status)

    @app.get("/readyz")
    async def readyz():
        ready, details = await asyncio.get_running_loop().run_in_executor(None, front.readiness)
        return JSONResponse(details, status_code=200 if ready else 503)

    return app
