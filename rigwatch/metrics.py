"""Serve a service's Prometheus registry on a loopback port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server

__all__ = ["serve_metrics"]


def serve_metrics(registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> int:
    """Serve *registry* at ``http://host:port/metrics``; port 0 picks a free one. Returns the port.

    A port of -1 disables the endpoint (tests that run many services in one process).
    """
    if port < 0:
        return -1
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return int(server.server_port)
