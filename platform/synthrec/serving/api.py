"""The HTTP API as one FastAPI factory, used by the Serve deployments and by plain uvicorn.

Routes only validate and delegate: a `GeneratorPort` / `RecommenderPort` does the work (a
Serve replica's own methods, or the model backends called in-process). Every bad input
ends as a 4xx `ErrorResponse` naming the field; nothing a client sends can raise past the
route, so a replica never dies of a request.

`mount` says which routes an app serves:
  - "generator" / "recommender" / "ranker": the one POST route at "" - the Serve application's
    route_prefix (/v1/synthetic, /v1/recommendations, /v1/rank) is the path, so the proxy hands the
    request to the model replica directly, with no extra hop through a gateway;
  - "full": every route at its full path (the gateway app, and plain uvicorn). Routes whose
    port is None answer 503 saying which model is not deployed.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic_core import to_json

from synthrec.config import ServeConfig
from synthrec.errors import ConditionError, SynthrecError
from synthrec.serving.auth import ApiKey
from synthrec.serving.encode import ARROW_STREAM, MEDIA_TYPES, is_cold_start
from synthrec.serving.metrics import ServeMetrics
from synthrec.serving.rank_schemas import RankRequest, RankResponse
from synthrec.serving.schemas import (
    ErrorResponse,
    HealthResponse,
    ModelsResponse,
    RecommendationRequest,
    RecommendationResponse,
    SyntheticRequest,
    SyntheticResponse,
    Unit,
)

logger = logging.getLogger("ray.serve")  # Serve writes this logger to the replica's log file

SYNTHETIC = "/v1/synthetic"
RECOMMENDATIONS = "/v1/recommendations"
RANK = "/v1/rank"
MODELS = "/v1/models"
HEALTH = "/healthz"
_ENDPOINTS = {SYNTHETIC, RECOMMENDATIONS, RANK, MODELS, HEALTH}
Mount = Literal["full", "generator", "recommender", "ranker"]


class GeneratorPort(Protocol):
    async def generate(self, request: SyntheticRequest) -> tuple[bytes, int, str]:
        """(body in request.format, rows (events of a sequence model), model version)."""

    async def model_info(self) -> dict[str, Any]: ...


class RecommenderPort(Protocol):
    async def recommend(self, request: RecommendationRequest) -> bytes:
        """JSON body of a RecommendationResponse."""

    async def model_info(self) -> dict[str, Any]: ...


class RankerPort(Protocol):
    async def rank(self, request: RankRequest) -> bytes:
        """JSON body of a RankResponse."""

    async def model_info(self) -> dict[str, Any]: ...


class RequestRejected(Exception):
    """Raised by a port for input the model refuses; becomes a 422 naming `field`."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def build_api(
    cfg: ServeConfig,
    key: ApiKey,
    *,
    generator: GeneratorPort | None = None,
    recommender: RecommenderPort | None = None,
    ranker: RankerPort | None = None,
    models: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    mount: Mount = "full",
    metrics: ServeMetrics | None = None,
) -> FastAPI:
    """The ASGI app for one Serve application (or a whole plain server when mount="full")."""
    full = mount == "full"
    app = FastAPI(
        title="synthrec",
        version="1",
        description=_DESCRIPTION,
        openapi_url="/openapi.json" if full else None,
        docs_url="/docs" if full else None,
        redoc_url=None,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    limits = cfg.limits

    async def synthetic(body: SyntheticRequest) -> Response:
        """Exactly `rows` synthetic rows, or `users` whole users with their events (sequence
        models); same request and seed, same answer."""
        if generator is None:
            return _error(
                503,
                "no generator model is deployed on this server; start it with --generator-uri URI "
                "(or set generator_uri)",
            )
        refused = _count_refused(body, limits)
        if refused is not None:
            return _error(422, *refused)
        if len(body.conditions) + len(body.rebalance) > limits.max_conditions:
            return _error(
                422,
                f"conditions: {len(body.conditions) + len(body.rebalance)} conditions and "
                f"rebalance entries, the limit is {limits.max_conditions}",
                "conditions",
            )
        try:
            data, rows, version = await generator.generate(body)
        except ConditionError as err:
            return rejected("/v1/synthetic", str(err), "conditions")
        except (RequestRejected, SynthrecError) as err:
            return rejected("/v1/synthetic", str(err), getattr(err, "field", None))
        if len(data) > limits.max_response_bytes:
            what = "rows" if body.rows is not None else "users"
            return _error(
                413,
                f"{what}: {body.rows or body.users} {what} encode to {len(data)} bytes in "
                f"{body.format.value}, over this server's response limit of "
                f"{limits.max_response_bytes} bytes; ask for fewer {what} per request (format "
                "arrow is the most compact)",
                what,
            )
        if metrics:
            metrics.rows(rows, body.format.value)
        return Response(
            data, media_type=MEDIA_TYPES[body.format], headers={"x-model-version": version}
        )

    def history_error(history: list) -> Response | None:
        if len(history) <= limits.max_history:
            return None
        return _error(
            422,
            f"history: {len(history)} items, the limit is {limits.max_history}; "
            "send the most recent ones",
            "history",
        )

    def rejected(endpoint: str, message: str, field: str | None) -> Response:
        """A request the model refuses: a 422 naming the field, counted by field."""
        if metrics:
            metrics.rejected(endpoint, field)
        return _error(422, message, field)

    async def answer(pending, endpoint: str) -> Response:
        """A backend's JSON answer (cold starts counted), or its request error as a 422."""
        try:
            data = await pending
        except (RequestRejected, SynthrecError) as err:
            return rejected(endpoint, str(err), getattr(err, "field", None))
        if metrics and is_cold_start(data):
            metrics.cold_start(endpoint)
        return Response(data, media_type="application/json")

    async def recommendations(body: RecommendationRequest) -> Response:
        """Top-k items with scores; unknown users get a cold-start answer, flagged as such."""
        if recommender is None:
            return _error(
                503,
                "no recommender model is deployed on this server; start it with "
                "--recommender-uri URI (or set recommender_uri)",
            )
        if body.k > limits.max_k:
            return _error(422, f"k: {body.k} is above this server's limit of {limits.max_k}", "k")
        if (too_long := history_error(body.history)) is not None:
            return too_long
        return await answer(recommender.recommend(body), "/v1/recommendations")

    async def rank(body: RankRequest) -> Response:
        """Position-free P(click), P(click, cart), P(click, cart, purchase) of each candidate,
        in the order given; unknown candidates are scored as cold items and flagged."""
        if ranker is None:
            return _error(
                503,
                "no ranking model is deployed on this server; start it with --recommender-uri "
                "URI of a recommender trained with label columns (click, cart, purchase)",
            )
        if len(body.items) > limits.max_candidates:
            return _error(
                422,
                f"items: {len(body.items)} candidates, the limit is {limits.max_candidates}; "
                "send fewer per request",
                "items",
            )
        if (too_long := history_error(body.history)) is not None:
            return too_long
        return await answer(ranker.rank(body), "/v1/rank")

    async def list_models() -> Response:
        """Versions and metadata of the loaded models."""
        info = await (models or _local_models(generator, recommender))()
        return Response(to_json(info), media_type="application/json")

    async def health() -> HealthResponse:
        """Liveness: this replica answers."""
        return HealthResponse()

    errors = {code: {"model": ErrorResponse} for code in (400, 401, 413, 422, 500, 503)}
    prefix = lambda path: path if full else ""  # noqa: E731 - Serve's route_prefix supplies the path
    if mount in ("full", "generator"):
        app.add_api_route(
            prefix(SYNTHETIC),
            synthetic,
            methods=["POST"],
            response_model=None,
            tags=["generator"],
            responses={
                200: {
                    "model": SyntheticResponse,
                    "description": "rows, or users with their events, in the asked format",
                    "content": {ARROW_STREAM: {}, "text/csv": {}},
                },
                **errors,
            },
        )
    if mount in ("full", "recommender"):
        app.add_api_route(
            prefix(RECOMMENDATIONS),
            recommendations,
            methods=["POST"],
            response_model=None,
            tags=["recommender"],
            responses={200: {"model": RecommendationResponse}, **errors},
        )
    if mount in ("full", "ranker"):
        app.add_api_route(
            prefix(RANK),
            rank,
            methods=["POST"],
            response_model=None,
            tags=["recommender"],
            responses={200: {"model": RankResponse}, **errors},
        )
    if full:
        app.add_api_route(
            MODELS,
            list_models,
            methods=["GET"],
            response_model=None,
            tags=["models"],
            responses={200: {"model": ModelsResponse}, 401: errors[401]},
        )
        app.add_api_route(HEALTH, health, methods=["GET"], tags=["health"])
        _document_auth(app)
    app.add_middleware(_Edge, key=key, metrics=metrics, max_body=limits.max_body_bytes)
    return app


def _count_refused(body: SyntheticRequest, limits) -> tuple[str, str] | None:
    """(message, field) when the request's count is missing, doubled, or over a limit."""
    if body.rows is None and body.users is None:
        return (
            "rows: give rows=N (rows; events of a sequence model) or users=N (whole users with "
            "their events; sequence models)",
            "rows",
        )
    if body.rows is not None and body.users is not None:
        return "users: give rows or users, not both", "users"
    if body.unit is Unit.users and body.rows is not None:
        return (
            "unit: unit users returns whole users; count them with users=N instead of rows",
            "unit",
        )
    if body.rows is not None and body.rows > limits.max_rows:
        return (
            f"rows: {body.rows} is above this server's limit of {limits.max_rows}; "
            "ask for fewer rows per request",
            "rows",
        )
    if body.users is not None and body.users > limits.max_users:
        return (
            f"users: {body.users} is above this server's limit of {limits.max_users}; "
            "ask for fewer users per request",
            "users",
        )
    return None


def _local_models(generator: GeneratorPort | None, recommender: RecommenderPort | None):
    async def collect() -> dict[str, Any]:
        return {
            "generator": await generator.model_info() if generator else {"loaded": False},
            "recommender": await recommender.model_info() if recommender else {"loaded": False},
        }

    return collect


def _error(status: int, detail: str, field: str | None = None) -> Response:
    return Response(_error_body(detail, field), status_code=status, media_type="application/json")


def _error_body(detail: str, field: str | None) -> bytes:
    """JSON of an error; text that is not valid UTF-8 (a lone surrogate a client sent and a
    model error repeats) is escaped instead of failing the response with a 500."""
    return to_json({"detail": _utf8(detail), "field": _utf8(field) if field else field})


def _utf8(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    """pydantic's errors -> one message naming each field; malformed JSON -> 400."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        ctx = next(e for e in errors if e.get("type") == "json_invalid").get("ctx") or {}
        return _error(400, f"body: malformed JSON ({ctx.get('error', 'cannot be parsed')})", "body")
    if errors and tuple(errors[0].get("loc", ())) == ("body",):  # no JSON object at all
        kind = request.headers.get("content-type", "none")
        hint = "" if "json" in kind else f" with Content-Type: application/json (got {kind})"
        return _error(422, f"body: expected a JSON object{hint}", "body")
    by_field: dict[str, list[dict]] = {}
    for e in errors:
        by_field.setdefault(_field_of(e.get("loc", ())), []).append(e)
    parts = []
    for field, errs in list(by_field.items())[:10]:
        e = errs[0]
        got = f" (got {_short(e['input'])})" if "input" in e and e.get("type") != "missing" else ""
        plain = [x for x in errs if x.get("type") in _SPECIFIC]  # NaN, lone surrogate
        if plain:
            e = plain[0]
        if len(errs) == 1 or plain:
            msg = e.get("msg", "invalid")
        else:  # a union: one line listing its members
            tags = [
                _UNION_TAG.match(p).group(2) or p
                for x in errs
                for p in x.get("loc", ())
                if isinstance(p, str) and _UNION_TAG.match(p)
            ]
            msg = (
                "expected one of " + ", ".join(dict.fromkeys(tags))
                if tags
                else errs[0].get("msg", "invalid")
            )
        parts.append(f"{field}: {msg}{got}")
    return _error(422, "; ".join(parts), next(iter(by_field), None))


# pydantic's names for union members in an error's loc; group 2: the type a validator wraps
_UNION_TAG = re.compile(
    r"^(str|int|float|bool|literal\[.*\]|dict\[.*\]|list\[.*\]|function-after\[.*, (\w+)\])$"
)
_SPECIFIC = {"finite_number", "value_error"}


def _field_of(loc: tuple) -> str:
    """('body', 'conditions', 'genre', 'str') -> 'conditions.genre' (pydantic names union members);
    a dict key's own error ('conditions', '<key>', '[key]') names the dict."""
    if "[key]" in loc:
        loc = loc[: loc.index("[key]") - 1]
    parts = [
        str(p) for p in loc if p != "body" and not (isinstance(p, str) and _UNION_TAG.match(p))
    ]
    return ".".join(parts) or "body"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _document_auth(app: FastAPI) -> None:
    """Declare the optional bearer key in OpenAPI without a per-request dependency."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "required on /v1/* when the server has an API key",
                }
            }
            for path, ops in schema["paths"].items():
                if path.startswith("/v1/"):
                    for op in ops.values():
                        op["security"] = [{"bearer": []}, {}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class _Edge:
    """Pure-ASGI middleware (no per-request task or body copy): API key, body size, metrics,
    and the last word on unexpected errors (a generic 500 with a reference; detail in the log).

    Runs before routing so a rejected request costs no parsing; records one count and one
    latency sample per request, tagged with a bounded endpoint name.
    """

    def __init__(self, app: Callable, key: ApiKey, metrics: ServeMetrics | None, max_body: int):
        self.app, self.key, self.metrics, self.max_body = app, key, metrics, max_body

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        path = scope["path"]
        endpoint = path if path in _ENDPOINTS else "other"
        started = [False]

        async def send_and_record(message: dict) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
                if self.metrics:
                    self.metrics.request(
                        endpoint, message["status"], (time.perf_counter() - start) * 1e3
                    )
            await send(message)

        authorization, length = None, None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
        if path.startswith("/v1/") and not self.key.check(authorization):
            return await _send(
                send_and_record,
                401,
                "missing or wrong API key; send 'Authorization: Bearer <key>'",
                "authorization",
                {b"www-authenticate": b"Bearer"},
            )
        too_large = f"body: over this server's limit of {self.max_body} bytes"
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return await _send(send_and_record, 413, too_large, "body")
        if length is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            # Chunked: no Content-Length to check, so read it here (at most max_body bytes)
            # and answer 413 ourselves; an error raised inside the route's body read would
            # reach the client as FastAPI's 400.
            body = await _read_bounded(receive, self.max_body)
            if body is None:
                return await _send(send_and_record, 413, too_large, "body")
            receive = _replay(body, receive)
        try:
            await self.app(scope, receive, send_and_record)
        except Exception:
            ref = uuid.uuid4().hex[:12]
            logger.exception("%s %s failed (ref %s)", scope.get("method"), path, ref)
            if not started[0]:
                await _send(
                    send_and_record, 500, f"internal error (ref {ref}); the server log has it", None
                )


async def _read_bounded(receive: Callable, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it passes `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Callable) -> Callable:
    """A `receive` that hands the app the buffered body once, then defers to the real one."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> dict:
        return pending.pop() if pending else await receive()

    return replay


async def _send(
    send: Callable, status: int, detail: str, field: str | None, headers: dict | None = None
) -> None:
    body = _error_body(detail, field)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += list((headers or {}).items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


_DESCRIPTION = """\
Synthetic interaction rows from a conditional GAN, or synthetic users with their event
sequences from a sequence model (`"users": N`), and top-k recommendations.

Bad input answers 4xx with `{"detail": ..., "field": ...}`. When the server has an API key,
every `/v1/*` route needs `Authorization: Bearer <key>` (401 without it). A full queue answers
503 with `Retry-After`.
"""
