"""Scorer settings, read from ``RIGWATCH_SCORER_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ScorerSettings"]


class ScorerSettings(BaseSettings):
    """How one scorer process consumes, scores and reports."""

    model_config = SettingsConfigDict(env_prefix="RIGWATCH_SCORER_", frozen=True, extra="ignore")

    group: str = "rigwatch-scorer"
    #: Model package folder; unset means the common ``RIGWATCH_MODEL_DIR``.
    model_dir: Path | None = None
    role: str = "champion"
    batch_max: int = Field(default=2000, ge=1)
    batch_timeout_ms: int = Field(default=20, ge=1)
    linger_ms: int = Field(default=2, ge=0)
    metrics_port: int = 9464
    #: Loopback by default; a container sets 0.0.0.0 so Prometheus can scrape it.
    metrics_host: str = "127.0.0.1"
