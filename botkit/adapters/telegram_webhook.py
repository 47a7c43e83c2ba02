"""The HTTP endpoint Telegram calls in webhook mode (aiohttp).

PTB's own webhook server compares the secret token with `!=`; this one uses a constant-time
comparison, so the secret cannot be guessed byte by byte from response times. It answers 200
only once the update is committed, and 503 while the bot is shutting down: Telegram keeps an
update and sends it again until it gets a 2xx ("In case of an unsuccessful request, we will
give up after a reasonable amount of attempts", Bot API, setWebhook).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from telegram import Bot, Update

__all__ = ["SECRET_HEADER", "WebhookServer"]

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class WebhookServer:
    """Receives updates by POST and hands each to deliver (True: taken and committed)."""

    def __init__(
        self,
        bot: Bot,
        secret: str | None,
        path: str,
        deliver: Callable[[Update], Awaitable[bool]],
    ) -> None:
        self._bot = bot
        self._deliver = deliver
        self._secret = secret
        self._path = path
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (port 0 picks a free one)."""
        web_app = web.Application()
        web_app.router.add_post(self._path, self._receive)
        self._runner = web.AppRunner(web_app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorised(self, request: web.Request) -> bool:
        if self._secret is None:
            return True
        given = request.headers.get(SECRET_HEADER, "")
        return hmac.compare_digest(given.encode(), self._secret.encode())

    async def _receive(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            log.warning("telegram webhook: refused a request without the right secret token")
            return web.Response(status=403, text="forbidden")
        try:
            data = await request.json()
        except ValueError:
            return web.Response(status=400, text="not JSON")
        update = Update.de_json(data, self._bot)
        if update is not None and not await self._deliver(update):
            return web.Response(status=503, text="restarting")
        return web.Response(text="ok")
