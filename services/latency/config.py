"""Latency (service health) processor settings, read from ``RIGWATCH_LATENCY_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["LatencySettings"]


class LatencySettings(BaseSettings):
    """How one latency worker windows and reports service health (every worker of a group must agree)."""

    model_config = SettingsConfigDict(env_prefix="RIGWATCH_LATENCY_", frozen=True, extra="ignore")

    #: Consumer group; workers with the same group share partitions and windows.
    group: str = "rigwatch-latency"
    #: Health windows are in the scorer's time (``scored_time``), closed by the wall clock.
    window_ms: int = Field(default=10_000, ge=100)
    #: How long after a window's end records may still arrive and count in it.
    lateness_ms: int = Field(default=2_000, ge=0)
    #: Wall time after which a silent partition no longer holds windows open.
    idle_ms: int = Field(default=5_000, ge=100)
    #: A model version without predictions for this long gets no more (empty) windows.
    forget_after_ms: int = Field(default=3_600_000, ge=1_000)
    #: The consumer group whose lag on the readings topic is reported (the scorers').
    scorer_group: str = "rigwatch-scorer"
    #: How the lag's end offsets are found: ``fetch`` reads the topic's newest offsets
    #: (right on any broker, including the local one), ``watermarks`` asks the broker
    #: (cheaper; only where the broker reports them correctly, e.g. Apache Kafka).
    lag_mode: Literal["fetch", "watermarks"] = "fetch"
    batch_max: int = Field(default=2000, ge=1)
    batch_timeout_ms: int = Field(default=50, ge=1)
    #: State and offsets are checkpointed to Redis this often (and every 20,000 records).
    checkpoint_ms: int = Field(default=250, ge=0)
    #: How often a worker looks for windows to close and emit.
    close_interval_ms: int = Field(default=500, ge=50)
    metrics_port: int = 9466
    #: Loopback by default; a container sets 0.0.0.0 so Prometheus can scrape it.
    metrics_host: str = "127.0.0.1"
