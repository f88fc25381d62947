"""The daemon's HTTP API (FastAPI): OpenAI-compatible chat plus SleepTrain's own endpoints.

Thin by design: it parses requests, calls the `Daemon`/`Agent`, and maps
exception classes to status codes in one place (`STATUS`). Errors use
OpenAI's shape: `{"error": {"message", "type", "code"}}`.

Security: when `serve.token` is set (it must be whenever the daemon binds to a
non-loopback address) every `/v1/*` request needs `Authorization: Bearer
<token>`; `/health` stays open. The token is never logged.

Endpoints
- `POST /v1/chat/completions` (stream and not; `model: "sleeptrain"` = the
  active adapter where the router sends the question there, else the base
  model (`serve.routing`); `model: "<active version>"` = always the adapter,
  `model: "base"` = always the base model; `user` selects the user;
  `X-Conversation-Id` groups turns and is returned on every reply, with
  `X-SleepTrain-Adapter` and `X-SleepTrain-Route`), `GET /v1/models`
- `GET /health` -> `status` ("ok" only when the backend answers), `adapter`,
  `sleeping`, `hippocampus_queue`, ...
- `POST /v1/sleep` (202 `{id, status}`; 409 when one runs or nothing is pending),
  `GET /v1/sleeps`, `GET /v1/sleeps/{id}` (status, scores, live progress)
- `GET /v1/memories` (`user`, `status`, `conversation`), `POST /v1/memories/{id}/forget`, `GET /v1/adapters`, `POST /v1/adapters/{version}/activate`
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.base import BaseHTTPMiddleware

from memory.store import DEFAULT_USER, MEMORY_STATUSES
from sleeptrain_agent.agent import ChatRequest
from sleeptrain_agent.backends import GenerationParams
from sleeptrain_agent.daemon import Daemon
from sleeptrain_agent.errors import (
    AdapterError,
    AuthError,
    BackendError,
    InvalidInput,
    NotFound,
    NothingToLearn,
    SleepBusy,
    SleepTrainError,
    TooLarge,
)

log = logging.getLogger(__name__)
MODEL_ID = "sleeptrain"
BASE_MODEL_ID = "base"
STATUS: dict[type[Exception], tuple[int, str]] = {
    AuthError: (401, "authentication_error"),
    SleepBusy: (409, "conflict"),
    NothingToLearn: (409, "conflict"),
    NotFound: (404, "not_found_error"),
    TooLarge: (413, "request_too_large"),
    InvalidInput: (400, "invalid_request_error"),
    AdapterError: (422, "adapter_error"),
    BackendError: (503, "backend_unavailable"),
    SleepTrainError: (500, "server_error"),
}


def error_body(message: str, kind: str, code: int) -> dict:
    return {"error": {"message": message, "type": kind, "code": code}}


def status_for(exc: Exception) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500, "server_error"


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict] | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # other OpenAI parameters are accepted and ignored
    model: str = MODEL_ID
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    stream_options: dict | None = None


class SleepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overrides: dict = Field(default_factory=dict, description="sleep.* settings for this sleep only")


class _BodyLimit(BaseHTTPMiddleware):
    def __init__(self, app, max_bytes: int):
        super().__init__(app)
        self.max_bytes = max_bytes

    async def dispatch(self, request: Request, call_next):
        length = request.headers.get("content-length")
        too_big = length is not None and length.isdigit() and int(length) > self.max_bytes
        if not too_big and request.method in ("POST", "PUT", "PATCH") and length is None:
            too_big = len(await request.body()) > self.max_bytes
        if too_big:
            msg = f"request body is over the limit of {self.max_bytes:,} bytes (serve.max_request_bytes)"
            return JSONResponse(error_body(msg, "request_too_large", 413), status_code=413)
        return await call_next(request)


def create_app(daemon: Daemon, manage_lifecycle: bool = True) -> FastAPI:
    settings = daemon.settings.serve
    token = settings.token.get_secret_value() if settings.token else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if manage_lifecycle:
            daemon.start()
        yield
        if manage_lifecycle:
            daemon.stop()

    app = FastAPI(title="SleepTrain", version="0.1.0", lifespan=lifespan)
    app.add_middleware(_BodyLimit, max_bytes=settings.max_request_bytes)

    @app.exception_handler(SleepTrainError)
    async def _known(request: Request, exc: SleepTrainError):
        code, kind = status_for(exc)
        if code >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc)
        return JSONResponse(error_body(str(exc), kind, code), status_code=code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {err.get('msg')}")
        return JSONResponse(error_body("; ".join(parts), "invalid_request_error", 400), status_code=400)

    def authorized(authorization: str | None = Header(None)) -> None:
        if token is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token.encode()):
            raise AuthError("missing or wrong bearer token")

    v1 = [Depends(authorized)]

    @app.get("/health")
    def health() -> JSONResponse:
        body = daemon.health()
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    @app.get("/v1/models", dependencies=v1)
    def list_models() -> dict:
        active = daemon.backend.active
        data = [{"id": MODEL_ID, "object": "model", "owned_by": "sleeptrain", "adapter": active,
                 "base_model": daemon.settings.model.name}]  # fmt: skip
        if active:
            data.append({"id": active, "object": "model", "owned_by": "sleeptrain", "adapter": active})
        data.append({"id": BASE_MODEL_ID, "object": "model", "owned_by": "sleeptrain", "adapter": None})
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", dependencies=v1)
    def chat_completions(body: ChatCompletionRequest, x_conversation_id: str | None = Header(None)):
        if body.model not in (MODEL_ID, BASE_MODEL_ID, daemon.backend.active):
            raise NotFound(f"model {body.model!r} does not exist; use {MODEL_ID!r} (the active adapter, routed), "
                           f"{BASE_MODEL_ID!r} or the active adapter's version")  # fmt: skip
        route = {MODEL_ID: "auto", BASE_MODEL_ID: "base"}.get(body.model, "adapter")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        params = GenerationParams(
            max_tokens=body.max_completion_tokens or body.max_tokens or settings.max_tokens,
            temperature=settings.temperature if body.temperature is None else body.temperature,
            top_p=body.top_p or 1.0,
            stop=stop,
            seed=body.seed,
        )
        request = ChatRequest(
            user=body.user or DEFAULT_USER,
            messages=[m.model_dump() for m in body.messages],
            params=params,
            conversation_id=x_conversation_id,
            route=route,
        )
        turn = daemon.agent.chat(request)
        created = int(time.time())
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        headers = {"X-Conversation-Id": turn.conversation_id, "X-SleepTrain-Adapter": turn.adapter or "base"}
        if turn.route is not None:
            r = turn.route
            headers["X-SleepTrain-Route"] = r.as_dict()["to"] + ("" if r.similarity is None else f"; similarity={r.similarity:.3f}")
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                _sse(turn, cid, created, body.model, usage), media_type="text/event-stream", headers=headers
            )
        text = turn.text()
        reply = turn.reply
        return JSONResponse(
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": body.model,
                "adapter": turn.adapter,
                "route": turn.route.as_dict() if turn.route else None,
                "conversation_id": turn.conversation_id,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reply.finish_reason}
                ],
                "usage": _usage(reply),
            },
            headers=headers,
        )

    @app.get("/v1/memories", dependencies=v1)
    def memories(
        user: str | None = None,
        status: list[str] | None = Query(None),
        conversation: str | None = None,
        limit: int | None = Query(None, ge=1),
    ) -> list[dict]:
        for s in status or []:
            if s not in MEMORY_STATUSES:
                raise InvalidInput(f"status must be one of {', '.join(MEMORY_STATUSES)}")
        return daemon.store.memories(status=status or None, user=user, limit=limit, conversation_id=conversation)

    @app.post("/v1/memories/{memory_id}/forget", dependencies=v1)
    def forget(memory_id: int) -> dict:
        return daemon.store.forget(memory_id)

    @app.get("/v1/adapters", dependencies=v1)
    def adapters() -> dict:
        return {"active": daemon.backend.active, "data": daemon.store.adapters()}

    @app.post("/v1/sleep", dependencies=v1, status_code=202)
    def sleep_now(body: SleepRequest | None = Body(None)) -> dict:
        """Optional body: `{"overrides": {sleep config keys}}` for this sleep only (ablations, experiments)."""
        row = daemon.start_sleep("api", body.overrides if body else None)
        return {"id": row["id"], "status": row["status"]}

    @app.get("/v1/sleeps", dependencies=v1)
    def sleeps(limit: int | None = Query(None, ge=1)) -> list[dict]:
        return daemon.store.sleeps(limit=limit)

    @app.get("/v1/sleeps/{sleep_id}", dependencies=v1)
    def sleep_status(sleep_id: int) -> dict:
        row = daemon.store.sleep(sleep_id)
        if row["status"] == "running" and daemon.sleep.current == sleep_id:
            row["progress"] = daemon.sleep.progress
        return row

    @app.post("/v1/adapters/{version}/activate", dependencies=v1)
    def activate(version: str) -> dict:
        return daemon.activate(None if version == "base" else version)

    return app


def _usage(reply) -> dict:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _sse(turn, cid: str, created: int, model: str, include_usage: bool):
    def event(delta: dict, finish: str | None = None) -> str:
        chunk = {
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "adapter": turn.adapter, "route": turn.route.as_dict() if turn.route else None,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }  # fmt: skip
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    try:
        yield event({"role": "assistant", "content": ""})
        for delta in turn:
            yield event({"content": delta})
        yield event({}, turn.reply.finish_reason or "stop")
        if include_usage:
            usage = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [], "usage": _usage(turn.reply)}  # fmt: skip
            yield f"data: {json.dumps(usage)}\n\n"
    except SleepTrainError as e:
        code, kind = status_for(e)
        yield f"data: {json.dumps(error_body(str(e), kind, code))}\n\n"
    finally:
        turn.close()
    yield "data: [DONE]\n\n"
