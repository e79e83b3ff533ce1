"""Promotion gate settings, read from ``RIGWATCH_GATE_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["GateSettings"]


class GateSettings(BaseSettings):
    """How the promotion gate reads verdicts and reports."""

    model_config = SettingsConfigDict(env_prefix="RIGWATCH_GATE_", frozen=True, extra="ignore")

    #: Consumer group: one gate per deployment topics is enough (a second one finds the
    #: change made and does nothing).
    group: str = "rigwatch-gate"
    batch_max: int = Field(default=500, ge=1)
    batch_timeout_ms: int = Field(default=100, ge=1)
    metrics_port: int = 9469
    #: Loopback by default; a container sets 0.0.0.0 so Prometheus can scrape it.
    metrics_host: str = "127.0.0.1"
