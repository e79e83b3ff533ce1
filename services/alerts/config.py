"""Alerts service settings, read from ``RIGWATCH_ALERTS_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["AlertsSettings"]


class AlertsSettings(BaseSettings):
    """How one alerts worker reads windows, keeps state and reports."""

    model_config = SettingsConfigDict(env_prefix="RIGWATCH_ALERTS_", frozen=True, extra="ignore")

    #: Consumer group; also names the alert state in Redis (a restart of the same group resumes it).
    group: str = "rigwatch-alerts"
    #: TOML rules file; unset means the defaults shipped in services/alerts/default_rules.toml.
    rules_file: Path | None = None
    batch_max: int = Field(default=500, ge=1)
    batch_timeout_ms: int = Field(default=100, ge=1)
    #: Alert states and offsets are checkpointed after every batch (0) or this often.
    checkpoint_ms: int = Field(default=0, ge=0)
    metrics_port: int = 9468
    #: Loopback by default; a container sets 0.0.0.0 so Prometheus can scrape it.
    metrics_host: str = "127.0.0.1"
