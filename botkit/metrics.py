"""Prometheus metrics (prometheus-client): what the bot receives, answers, and how fast.

Always counted (it is cheap); served over HTTP only when [metrics] enabled, on 127.0.0.1 by
default.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["Metrics"]

_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
_TPS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)


class Metrics:
    """The bot's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "botkit_messages_received", "Messages handed to the router", ["platform"], registry=r
        )
        self.replies = Counter(
            "botkit_replies", "Replies generated, by backend and status", ["backend", "status"],
            registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "botkit_errors", "Messages answered with an error, by kind", ["kind"], registry=r
        )
        self.queue = Gauge(
            "botkit_queue_depth", "Replies waiting for a model", ["backend"], registry=r
        )
        self.ttft = Histogram(
            "botkit_time_to_first_token_seconds", "From the message to the first reply text",
            ["backend"], buckets=_TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens_per_second = Histogram(
            "botkit_tokens_per_second", "Generation speed of each reply", ["backend"],
            buckets=_TPS_BUCKETS, registry=r,
        )  # fmt: skip

    def serve(self, host: str, port: int) -> WSGIServer:
        """Expose /metrics over HTTP (a daemon thread of prometheus-client); returns the server."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
