"""Drift processor settings, read from ``RIGWATCH_DRIFT_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DriftSettings"]


class DriftSettings(BaseSettings):
    """How one drift worker windows, judges and reports (every worker of a group must agree)."""

    model_config = SettingsConfigDict(env_prefix="RIGWATCH_DRIFT_", frozen=True, extra="ignore")

    #: Consumer group; workers with the same group share partitions and windows.
    group: str = "rigwatch-drift"
    #: Model package folder; unset means the common ``RIGWATCH_MODEL_DIR``.
    model_dir: Path | None = None
    window_ms: int = Field(default=30_000, ge=100)
    #: Event time a record may lag the watermark and still count in its window.
    lateness_ms: int = Field(default=5_000, ge=0)
    #: Wall time after which a silent partition stops holding windows open.
    idle_ms: int = Field(default=10_000, ge=100)
    #: Fewer records than this in a window: counts are reported, no verdict.
    min_count: int = Field(default=30, ge=1)
    batch_max: int = Field(default=2000, ge=1)
    batch_timeout_ms: int = Field(default=50, ge=1)
    #: State and offsets are checkpointed to Redis this often (and every 20,000 records).
    checkpoint_ms: int = Field(default=250, ge=0)
    #: How often a worker looks for windows to close and emit.
    close_interval_ms: int = Field(default=500, ge=50)
    metrics_port: int = 9465
    #: Loopback by default; a container sets 0.0.0.0 so Prometheus can scrape it.
    metrics_host: str = "127.0.0.1"
