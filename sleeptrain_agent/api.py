"""The daemon's HTTP API (FastAPI): OpenAI-compatible chat plus SleepTrain's own endpoints.

Thin by design: it parses requests, calls the `Daemon`/`Agent`, and maps
exception classes to status codes in one place (`STATUS`). Errors use
OpenAI's shape: `{"error": {"message", "type", "code"}}`.

Security: when `serve.token` is set (it must be whenever the daemon binds to a
non-loopback address) every `/v1/*` request needs `Authorization: Bearer
<token>`; `/health` stays open. The token is never logged. No web page may
drive or read the daemon (`_Guard`): a `/v1/*` request whose `Host` is not the
daemon's own address (loopback names, the bound host) gets 403, so does one
whose `Origin` is present and foreign, unless it carries the token; a body
that is not `application/json` gets 415 (an HTML form cannot send JSON
without a CORS preflight, which is never granted). Bodies over
`serve.max_request_bytes` get 413 as they arrive, chunked or not.

Every error, the framework's own included (404, 405, 413, 415, 422, an
unexpected 500), has OpenAI's shape, and an unexpected exception is logged
with its traceback and answered without it.

Endpoints
- `POST /v1/chat/completions` (stream and not; `user` selects the user, and
  only that user's adapter ever answers them; `model: "sleeptrain"` = their
  adapter where the router sends the question there, else the base model
  (`serve.routing`); `model: "<their active version>"` = always their adapter,
  `model: "base"` = always the base model;
  `X-Conversation-Id` groups turns and is returned on every reply, with
  `X-SleepTrain-Adapter` and `X-SleepTrain-Route`), `GET /v1/models`
- `GET /health` -> `status` ("ok" only when the backend answers), `adapter`,
  `sleeping`, `hippocampus_queue`, ...
- `POST /v1/sleep` (202 `{id, status, user, queue}`: no `user`, every user with
  pending memories in turn; 409 when one runs or nothing is pending),
  `GET /v1/sleeps` (`user`), `GET /v1/sleeps/{id}` (status, scores, live progress)
- `GET /v1/memories` (`user`, `status`, `conversation`), `POST /v1/memories/{id}/forget`, `GET /v1/users`,
  `POST /v1/users/{user}/forget`, `GET /v1/adapters` (`user`), `POST /v1/adapters/{version}/activate`
  (`base` with `{"user": U}`: U is answered by the base model)
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import urllib.parse
import uuid
from contextlib import asynccontextmanager

from fastapi import Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

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
MAX_ID = 2**63 - 1  # SQLite's largest integer: ids and limits beyond it are a client's mistake (400)
MAX_STOP = 16  # stop strings per request
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

    @field_validator("role")
    @classmethod
    def _developer_is_system(cls, role: str) -> str:
        return "system" if role == "developer" else role  # what current OpenAI clients send instead of system


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # other OpenAI parameters are accepted and ignored
    model: str = MODEL_ID
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=MAX_ID)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_ID)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=MAX_ID)
    n: int | None = Field(None, ge=1)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)  # default serve.frequency_penalty
    user: str | None = None
    stream_options: dict | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop):
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings, not {len(stops)}")
        for s in stops:
            if not s:
                raise ValueError("a stop string must not be empty")
            if len(s) > 256:
                raise ValueError("a stop string is at most 256 characters")
            try:
                s.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("a stop string is not valid Unicode (lone surrogate)") from None
        return stops

    @model_validator(mode="after")
    def _one_choice(self):
        if self.n is not None and self.n > 1:
            raise ValueError("n > 1 is not supported: one choice per request")
        return self


class SleepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overrides: dict = Field(default_factory=dict, description="sleep.* settings for this sleep only")
    deep: bool = Field(False, description="train a new adapter from the base model (a deep sleep)")
    user: str | None = Field(None, min_length=1, max_length=200,
                             description="sleep this user only (default: every user with pending memories, in turn)")


class ActivateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(None, min_length=1, max_length=200, description="whose lineage (needed for `base`)")


class _Guard:
    """ASGI middleware, before any endpoint: the body-size limit, applied as the body arrives (a chunked
    body is counted, not read whole first), and the checks that keep web pages out (see the module
    docstring): Host, Origin, JSON bodies."""

    def __init__(self, app, max_bytes: int, hosts: set[str], token: str | None):
        self.app = app
        self.max_bytes = max_bytes
        self.hosts = hosts
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refused = self._refuse(scope, headers)
        if refused is not None:
            return await refused(scope, receive, send)
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._too_big()(scope, receive, send)
        if length is None and scope["method"] in ("POST", "PUT", "PATCH"):  # chunked: count it as it arrives
            messages, received = [], 0
            while True:
                message = await receive()
                messages.append(message)
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    return await self._too_big()(scope, receive, send)  # the rest is never read
                if message["type"] != "http.request" or not message.get("more_body"):
                    break
            buffered = iter(messages)

            async def replay():
                return next(buffered, None) or await receive()

            return await self.app(scope, replay, send)
        await self.app(scope, receive, send)

    def _too_big(self) -> JSONResponse:
        msg = f"request body is over the limit of {self.max_bytes:,} bytes (serve.max_request_bytes)"
        # and close the connection: the rest of the body is never read, not even to be thrown away
        return JSONResponse(error_body(msg, "request_too_large", 413), status_code=413, headers={"connection": "close"})

    def _refuse(self, scope, headers: dict) -> JSONResponse | None:
        if not scope["path"].startswith("/v1/"):
            return None
        if self.token is not None and secrets.compare_digest(headers.get("authorization", "").encode(),
                                                              f"Bearer {self.token}".encode()):  # fmt: skip
            return None  # a client that holds the token is not a web page
        host = _hostname("//" + headers.get("host", ""))
        if host not in self.hosts:
            return JSONResponse(error_body(f"host {headers.get('host')!r} is not this daemon's address",
                                           "permission_error", 403), status_code=403)  # fmt: skip
        origin = headers.get("origin")
        if origin is not None and _hostname(origin) not in self.hosts:  # "null" (an opaque origin) included
            return JSONResponse(error_body(f"requests from {origin} are not allowed", "permission_error", 403),
                                status_code=403)  # fmt: skip
        if scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            has_body = headers.get("content-length", "0") not in ("0", "") or "chunked" in headers.get("transfer-encoding", "")
            if kind not in ("application/json", "") or (has_body and kind != "application/json"):
                return JSONResponse(error_body("request bodies must be application/json", "unsupported_media_type", 415),
                                    status_code=415)  # fmt: skip
        return None


def _hostname(url: str) -> str | None:
    try:
        return urllib.parse.urlsplit(url).hostname
    except ValueError:
        return None


def allowed_hosts(host: str) -> set[str]:
    """The names a request to this daemon may use in Host and Origin: loopback, and the bound address."""
    return {"127.0.0.1", "localhost", "::1", host.strip("[]").lower()} - {"0.0.0.0", "::", ""}


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
    app.add_middleware(_Guard, max_bytes=settings.max_request_bytes, hosts=allowed_hosts(settings.host), token=token)

    @app.exception_handler(SleepTrainError)
    async def _known(request: Request, exc: SleepTrainError):
        code, kind = status_for(exc)
        if code >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc)
        return JSONResponse(error_body(str(exc), kind, code), status_code=code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        kind = {404: "not_found_error", 405: "method_not_allowed", 413: "request_too_large",
                415: "unsupported_media_type"}.get(exc.status_code, "invalid_request_error")  # fmt: skip
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse(error_body(message, kind, exc.status_code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))  # fmt: skip

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(error_body("internal error (the daemon log has the details)", "server_error", 500),
                            status_code=500)  # fmt: skip

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

    def models() -> list[dict]:
        created = int(daemon.started_at)
        data = [{"id": MODEL_ID, "object": "model", "created": created, "owned_by": "sleeptrain",
                 "base_model": daemon.settings.model.name}]  # fmt: skip
        for user, version in sorted(daemon.backend.serving.items()):
            data.append({"id": version, "object": "model", "created": created, "owned_by": "sleeptrain",
                         "adapter": version, "user": user})  # fmt: skip
        data.append({"id": BASE_MODEL_ID, "object": "model", "created": created, "owned_by": "sleeptrain", "adapter": None})
        return data

    @app.get("/v1/models", dependencies=v1)
    def list_models() -> dict:
        return {"object": "list", "data": models()}

    @app.get("/v1/models/{model_id}", dependencies=v1)
    def get_model(model_id: str) -> dict:
        for m in models():
            if m["id"] == model_id:
                return m
        raise NotFound(f"model {model_id!r} does not exist")

    @app.post("/v1/chat/completions", dependencies=v1)
    def chat_completions(body: ChatCompletionRequest, x_conversation_id: str | None = Header(None)):
        user = body.user or DEFAULT_USER
        if body.model not in (MODEL_ID, BASE_MODEL_ID) and body.model != daemon.backend.active_for(user):
            raise NotFound(f"model {body.model!r} does not exist for user {user!r}; use {MODEL_ID!r} (their adapter, "
                           f"routed), {BASE_MODEL_ID!r} or their active adapter's version")  # fmt: skip
        route = {MODEL_ID: "auto", BASE_MODEL_ID: "base"}.get(body.model, "adapter")
        stop = list(body.stop or [])
        params = GenerationParams(
            max_tokens=body.max_completion_tokens or body.max_tokens or settings.max_tokens,
            temperature=settings.temperature if body.temperature is None else body.temperature,
            top_p=body.top_p or 1.0,
            stop=stop,
            seed=body.seed,
            frequency_penalty=settings.frequency_penalty if body.frequency_penalty is None else body.frequency_penalty,
        )
        request = ChatRequest(
            user=user,
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
        limit: int | None = Query(None, ge=1, le=MAX_ID),
    ) -> list[dict]:
        for s in status or []:
            if s not in MEMORY_STATUSES:
                raise InvalidInput(f"status must be one of {', '.join(MEMORY_STATUSES)}")
        return daemon.store.memories(status=status or None, user=user, limit=limit, conversation_id=conversation)

    @app.post("/v1/memories/{memory_id}/forget", dependencies=v1)
    def forget(memory_id: int = Path(ge=1, le=MAX_ID)) -> dict:
        return daemon.forget(memory_id)

    @app.get("/v1/users", dependencies=v1)
    def users() -> list[dict]:
        return daemon.store.users()

    @app.post("/v1/users/{user}/forget", dependencies=v1)
    def forget_user(user: str = Path(min_length=1, max_length=200)) -> dict:
        return daemon.forget_user(user)

    @app.get("/v1/adapters", dependencies=v1)
    def adapters(user: str | None = Query(None, min_length=1, max_length=200)) -> dict:
        """Adapter versions (of `user`'s lineage); `active`: the version answering each user now."""
        serving = daemon.backend.serving
        active = {u: v for u, v in serving.items() if user is None or u == user}
        return {"user": user, "active": active, "data": daemon.store.adapters(user=user)}

    @app.post("/v1/sleep", dependencies=v1, status_code=202)
    def sleep_now(body: SleepRequest | None = Body(None)) -> dict:
        """Optional body: `{"user": U}` to sleep one user (default: every user with pending memories, one
        after another, oldest pending first), `{"overrides": {sleep config keys}}` for this sleep only
        (ablations, experiments), `{"deep": true}` for a deep sleep (from the base model)."""
        overrides = {**body.overrides, **({"deep": True} if body.deep else {})} if body else None
        row = daemon.start_sleep("api", overrides, body.user if body else None)
        return {"id": row["id"], "status": row["status"], "user": row["user"], "queue": row["queue"]}

    @app.get("/v1/sleeps", dependencies=v1)
    def sleeps(limit: int | None = Query(None, ge=1, le=MAX_ID),
               user: str | None = Query(None, min_length=1, max_length=200)) -> list[dict]:  # fmt: skip
        return daemon.store.sleeps(limit=limit, user=user)

    @app.get("/v1/sleeps/{sleep_id}", dependencies=v1)
    def sleep_status(sleep_id: int = Path(ge=1, le=MAX_ID)) -> dict:
        row = daemon.store.sleep(sleep_id)
        if row["status"] == "running" and daemon.sleep.current == sleep_id:
            row["progress"] = daemon.sleep.progress
        return row

    @app.post("/v1/adapters/{version}/activate", dependencies=v1)
    def activate(version: str, body: ActivateRequest | None = Body(None)) -> dict:
        return daemon.activate(None if version == "base" else version, body.user if body else None)

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
