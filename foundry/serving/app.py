"""The FastAPI app: routes, the API-key and body-size guard, and the error answers.

One app for two hosts: the Ray Serve deployment (``serve_apps.app``) and the plain uvicorn server
(``foundry.serving.standalone``) both call ``build_app`` with a *backend* that does the work, so
validation, auth, limits and responses are identical and a benchmark between them compares only
the serving machinery.

Order of checks, cheapest first, and all before the body is parsed: the API key (401 missing,
403 wrong) for the protected paths, then the body size (413, also for chunked bodies without a
Content-Length). Then FastAPI/pydantic validate the JSON against the schema-built models and
``errors.describe`` turns any failure into a 4xx naming the field. A request that passes all of
it cannot make the model fail, so a client cannot cause a 5xx or crash a replica.

(No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at run
time, and the request models are local variables.)
"""

import inspect
import json
import logging
import uuid
from collections.abc import Awaitable
from typing import Any, Protocol

from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException

from foundry.serving import errors
from foundry.serving.auth import ApiKeyChecker, AuthResult
from foundry.serving.holder import ModelUnavailable
from foundry.serving.keys import Scope
from foundry.serving.metrics import ServingMetrics
from foundry.serving.schema import ApiModels, ErrorResponse, FeedbackResponse, PredictResponse

logger = logging.getLogger(__name__)

# path -> the scope of key it takes (foundry.serving.auth: /feedback has its own once a feedback key is set)
PROTECTED_PATHS = {"/predict": Scope.predict, "/model": Scope.predict, "/feedback": Scope.feedback}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Backend(Protocol):
    """What a host provides; all of it runs on the host's event loop."""

    async def predict(self, rows: list[dict[str, Any]], request_id: str | None = None) -> dict[str, Any]: ...

    async def feedback(self, labels: list[dict[str, Any]]) -> dict[str, Any]: ...

    def model_info(self) -> dict[str, Any] | Awaitable[dict[str, Any]]: ...

    def health(self) -> tuple[bool, dict[str, Any]]: ...


def _route_path(scope: dict) -> str:
    """The path inside the app (Serve mounts it under ``route_prefix`` and sets ``root_path``)."""
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):] or "/"
    return path


async def _send_json(send, status: int, payload: dict, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Pure ASGI middleware: API key and body size, before any body parsing or routing work."""

    def __init__(self, app, auth: ApiKeyChecker, max_body_bytes: int, metrics: ServingMetrics):
        self.app = app
        self.auth = auth
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def _reject(self, send, rejection: errors.Rejection, headers=None) -> None:
        self.metrics.rejected(rejection.reason)
        await _send_json(send, rejection.status, rejection.body(), headers)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        key_scope = PROTECTED_PATHS.get(_route_path(scope))
        if key_scope is not None:
            verdict = self.auth.check_headers(headers, key_scope)
            if verdict is AuthResult.missing:
                return await self._reject(send, errors.simple(
                    401, "unauthorized", "missing API key: send it as 'X-API-Key: <key>' or "
                    "'Authorization: Bearer <key>'", "X-API-Key"), [(b"www-authenticate", b"Bearer")])
            if verdict is AuthResult.invalid:
                return await self._reject(send, errors.simple(403, "forbidden", "invalid API key", "X-API-Key"))
            if verdict is AuthResult.wrong_scope:
                return await self._reject(send, errors.simple(403, "forbidden", (
                    "/feedback needs the feedback key (serve.auth.feedback_key_env/_file); this key may only predict"
                    if key_scope is Scope.feedback else
                    "this is the feedback key: it may only send /feedback; /predict and /model need the predict key"),
                    "X-API-Key"))
            if verdict is AuthResult.busy:
                return await self._reject(send, errors.simple(
                    429, "too_many_requests", "too many unknown API keys to check right now; retry in a second",
                    "X-API-Key"), [(b"retry-after", b"1")])
        if scope.get("method") not in _BODY_METHODS:
            return await self.app(scope, receive, send)

        limit = self.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return await self._reject(send, errors.simple(400, "bad_request", "invalid Content-Length header",
                                                              "Content-Length"))
            if int(declared) > limit:
                return await self._reject(send, errors.simple(
                    413, "body_too_large", f"request body of {int(declared)} bytes exceeds the limit of {limit} "
                    "bytes (serve.limits.max_body_bytes)"))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await self._reject(send, errors.simple(
                    413, "body_too_large", f"request body exceeds the limit of {limit} bytes "
                    "(serve.limits.max_body_bytes)"))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in (
        (400, "Malformed JSON"), (401, "Missing API key"), (403, "Invalid API key"),
        (404, "A label for a request id this model did not answer (within serve.feedback.window_s)"),
        (409, "A second label for a request id (serve.feedback.on_repeat=refuse)"),
        (413, "Body or row count over the configured limit"), (422, "A field is missing, extra, of the wrong "
                                                                    "type, not finite or outside the schema"),
        (503, "No model loaded"))
}


def build_app(models: ApiModels, backend: Backend, auth: ApiKeyChecker, max_body_bytes: int,
              metrics: ServingMetrics | None = None, title: str = "Foundry") -> FastAPI:
    metrics = metrics or ServingMetrics()
    app = FastAPI(title=title, description="Predictions from the model registry's served version. "
                  "Send the API key as `X-API-Key` (or `Authorization: Bearer`) on /predict, /feedback and /model.")
    api_key_doc = APIKeyHeader(name="X-API-Key", auto_error=False)  # documents the key; Guard enforces it
    secured = [Security(api_key_doc)]
    PredictRequest = models.predict_request  # noqa: N806 -- a class, used as an annotation below
    FeedbackRequest = models.feedback_request  # noqa: N806

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        rejection = errors.describe(exc.errors())
        metrics.rejected(rejection.reason)
        return JSONResponse(rejection.body(), status_code=rejection.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        # FastAPI answers a body it cannot even decode (not UTF-8) with a bare 400; say it like the rest.
        if exc.status_code == 400:
            rejection = errors.simple(400, "malformed_json", f"the body could not be read as JSON ({exc.detail})")
            metrics.rejected(rejection.reason)
            return JSONResponse(rejection.body(), status_code=400)
        reason = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": reason, "message": str(exc.detail), "problems": []},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(errors.Refused)
    async def _refused(_request: Request, exc: errors.Refused):
        metrics.rejected(exc.rejection.reason)
        return JSONResponse(exc.rejection.body(), status_code=exc.rejection.status)

    @app.exception_handler(ModelUnavailable)
    async def _unavailable(_request: Request, exc: ModelUnavailable):
        return JSONResponse({"error": "model_unavailable", "message": str(exc), "problems": []}, status_code=503)

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception):
        error_id = uuid.uuid4().hex[:12]
        logger.error("internal error %s: %s: %s", error_id, type(exc).__name__, exc, exc_info=exc)
        return JSONResponse({"error": "internal", "message": f"internal error (id {error_id})", "problems": []},
                            status_code=500)

    @app.post("/predict", response_model=PredictResponse, dependencies=secured, responses=_ERROR_RESPONSES,
              summary="Predict one or many rows")
    async def predict(body: PredictRequest):  # type: ignore[valid-type]
        return JSONResponse(await backend.predict(body.rows, body.request_id))

    @app.post("/feedback", response_model=FeedbackResponse, dependencies=secured, responses=_ERROR_RESPONSES,
              summary="Ground-truth labels for earlier predictions (by request_id)")
    async def feedback(body: FeedbackRequest):  # type: ignore[valid-type]
        return JSONResponse(await backend.feedback(body.labels))

    @app.get("/model", dependencies=secured, summary="The served version, its metadata, the roll-out (challenger, "
             "mode, fraction, live evidence) and the last swap error")
    async def model():
        info = backend.model_info()
        return JSONResponse(await info if inspect.isawaitable(info) else info)

    @app.get("/healthz", summary="Liveness and the served version (no API key)")
    async def healthz():
        ok, info = backend.health()
        return JSONResponse(info, status_code=200 if ok else 503)

    app.add_middleware(Guard, auth=auth, max_body_bytes=max_body_bytes, metrics=metrics)
    return app
