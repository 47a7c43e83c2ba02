"""Metrics, rate limits and the bounded queue, as an operator would see them."""

from __future__ import annotations

import asyncio
import socket
import urllib.request

from prometheus_client import generate_latest

from botkit.adapters.memory import MemoryTarget
from botkit.backends.scripted import ScriptedBackend
from botkit.compose import build_bot
from botkit.core.app import Bot
from botkit.core.limits import RateLimiter
from tests.conftest import MakeConfig, incoming, say


async def scripted_bot(make_config: MakeConfig, **service: int) -> Bot:
    bot = build_bot(make_config(service=service), backends={"local": ScriptedBackend("local")})
    await bot.start()
    return bot


async def test_metrics_count_messages_replies_and_errors(make_config: MakeConfig) -> None:
    bot = await scripted_bot(make_config)
    try:
        await say(bot, "Hello")
        await say(bot, "/temp 9")
        text = generate_latest(bot.metrics.registry).decode()
        assert 'botkit_messages_received_total{platform="test"} 2.0' in text
        assert 'botkit_replies_total{backend="local",status="complete"} 1.0' in text
        assert 'botkit_errors_total{kind="CommandError"} 1.0' in text
        assert 'botkit_time_to_first_token_seconds_count{backend="local"} 1.0' in text
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = bot.metrics.serve("127.0.0.1", port)
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
        finally:
            server.shutdown()
            server.server_close()
        assert b"botkit_replies_total" in body
    finally:
        await bot.close()


async def test_a_user_over_the_rate_limit_gets_a_polite_reply(make_config: MakeConfig) -> None:
    bot = await scripted_bot(make_config, rate_limit_per_minute=2)
    try:
        assert (await say(bot, "one")).text == "echo: one"
        assert (await say(bot, "two")).text == "echo: two"
        refused = (await say(bot, "three")).text
        assert refused.startswith("⚠ you are sending messages faster than 2 a minute")
        assert (await say(bot, "/temp")).text.startswith("temperature")  # commands still work
    finally:
        await bot.close()


def test_the_rate_limit_window_slides() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert limiter.check("u") == 0
    now[0] = 30
    assert limiter.check("u") == 0
    assert limiter.check("u") == 30  # the first request leaves the window at 60
    now[0] = 60
    assert limiter.check("u") == 0
    assert limiter.check("other") == 0


async def test_a_full_queue_says_busy_instead_of_growing(make_config: MakeConfig) -> None:
    bot = await scripted_bot(make_config, max_queue=1)
    gate = asyncio.Event()
    entered = asyncio.Event()
    try:
        backend = bot.backends["local"]
        original = backend.stream

        async def slow_stream(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            entered.set()
            await gate.wait()
            async for chunk in original(*args, **kwargs):  # type: ignore[arg-type]
                yield chunk

        backend.stream = slow_stream  # type: ignore[method-assign]
        first = asyncio.create_task(bot.router.handle(incoming("first", "a"), MemoryTarget()))
        await entered.wait()
        queued_target = MemoryTarget()
        queued = asyncio.create_task(bot.router.handle(incoming("second", "b"), queued_target))
        async with asyncio.timeout(30):
            await bot.scheduler.wait_until_queued("local", 1)
        busy = await say(bot, "third", chat="c")
        assert busy.text == "⚠ the model is busy (1 replies are waiting); try again in a moment"
        gate.set()
        await asyncio.gather(first, queued)
        assert queued_target.text == "echo: second"
    finally:
        await bot.close()
