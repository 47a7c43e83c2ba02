"""The REST API's plumbing: authorization, the answers' JSON and error bodies, rate-limit
headers and queued 429s, request logging, and reading a JSON or multipart body.

Answers carry `Content-Type: application/json` exactly (discord.py ignores bodies with a
charset) and the rate-limit headers of every Discord answer; `fail_next[op]` answers the next
request of that kind with a 429 and its `retry_after`
(https://discord.com/developers/docs/topics/rate-limits). Errors have Discord's shape and codes
(https://discord.com/developers/docs/topics/opcodes-and-status-codes#json), form errors nested
by the path of the field (50035 Invalid Form Body).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.emulators.discord.constants import API_PREFIX, JSON
from tests.emulators.discord.state import EmulatorState

__all__ = [
    "Handler",
    "Reject",
    "RestRouter",
    "error",
    "form_error",
    "json_response",
    "message_body",
    "read_json",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Reject(Exception):
    """Raised by helpers to answer a request with an error response."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer as Discord sends it."""
    # Not web.json_response: its "; charset=utf-8" makes discord.py treat the body as text.
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json"
    )


def error(status: int, message: str, code: int, errors: JSON | None = None) -> web.Response:
    """An error answer: Discord's message and JSON error code (and field errors)."""
    body: JSON = {"message": message, "code": code}
    if errors is not None:
        body["errors"] = errors
    return json_response(body, status)


def form_error(path: list[str], code: str, message: str) -> Reject:
    """50035 Invalid Form Body, the error nested under the field's path."""
    errors: JSON = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        errors = {key: errors}
    return Reject(error(400, "Invalid Form Body", 50035, errors))


async def read_json(request: web.Request) -> Any:
    """The request's JSON body (None when it has none); 50109 when it is not JSON."""
    if not request.body_exists:
        return None
    try:
        return json.loads(await request.text())
    except ValueError:
        raise Reject(error(400, "The request body contains invalid JSON.", 50109)) from None


async def message_body(request: web.Request) -> tuple[JSON, list[str]]:
    """A JSON body, or multipart with payload_json and files; (payload, file names)."""
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        files = [v.filename for v in form.values() if isinstance(v, web.FileField)]
        raw = form.get("payload_json")
        body: Any = json.loads(raw) if isinstance(raw, (str, bytes)) else {}
    else:
        files = []
        body = await read_json(request)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise form_error([], "DICT_TYPE_CONVERT", "Only dictionaries may be used.")
    return body, files


def _too_many(retry_after: float, bucket: str) -> web.Response:
    body = {"message": "You are being rate limited.", "retry_after": retry_after,
            "global": False, "code": 0}  # fmt: skip
    response = json_response(body, 429)
    response.headers.update({
        "Retry-After": str(math.ceil(retry_after)), "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
        "X-RateLimit-Reset-After": f"{retry_after:.3f}", "X-RateLimit-Bucket": bucket,
        "X-RateLimit-Scope": "user",
    })  # fmt: skip
    return response


class RestRouter:
    """Adds routes under /api/v10 that log, authorize, rate-limit and answer like Discord."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    def add(
        self,
        app: web.Application,
        method: str,
        path: str,
        handler: Handler,
        *,
        auth: bool = True,
        op: str | None = None,
    ) -> None:
        """Route method path to handler; auth=False for the token-authorized interaction
        routes, op names the kind of request that `fail_next` can answer with a 429."""
        bucket = hashlib.sha1(f"{method} {path}".encode()).hexdigest()[:32]

        async def wrapped(request: web.Request) -> web.StreamResponse:
            self._state.requests.append((request.method, request.path.removeprefix(API_PREFIX)))
            try:
                response = await self._guarded(request, handler, auth, op, bucket)
            finally:
                await self._state.notify()
            response.headers["Via"] = "1.1 google"
            return response

        app.router.add_route(method, API_PREFIX + path, wrapped)

    async def _guarded(
        self, request: web.Request, handler: Handler, auth: bool, op: str | None, bucket: str
    ) -> web.StreamResponse:
        if auth and request.headers.get("Authorization") != f"Bot {self._state.token}":
            return error(401, "401: Unauthorized", 0)
        if op is not None and self._state.fail_next.get(op):
            retry_after = self._state.fail_next[op].pop(0)
            self._state.rate_limited += 1
            return _too_many(retry_after, bucket)
        try:
            response = await handler(request)
        except Reject as rejected:
            response = rejected.response
        now = time.time()
        response.headers.update({
            "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "4",
            "X-RateLimit-Reset": f"{now + 1:.3f}", "X-RateLimit-Reset-After": "1.000",
            "X-RateLimit-Bucket": bucket,
        })  # fmt: skip
        return response

    async def unknown(self, request: web.Request) -> web.StreamResponse:
        """Any other route: logged in `unknown_routes`, answered 404 as Discord does."""
        route = (request.method, request.path.removeprefix(API_PREFIX))
        self._state.requests.append(route)
        self._state.unknown_routes.append(route)
        await self._state.notify()
        return error(404, "404: Not Found", 0)
