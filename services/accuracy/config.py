"""Accuracy processor settings, read from ``RIGWATCH_ACCURACY_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["AccuracySettings"]


class AccuracySettings(BaseSettings):
    """How one accuracy worker joins, windows and reports (every worker of a group must agree)."""

    model_config = SettingsConfigDict(env_prefix="RIGWATCH_ACCURACY_", frozen=True, extra="ignore")

    #: Consumer group; workers with the same group share partitions and join state.
    group: str = "rigwatch-accuracy"
    #: Model package whose confidence calibration gives the estimated accuracy; unset: RIGWATCH_MODEL_DIR.
    model_dir: Path | None = None
    #: Windows in label time: a pair counts in the window its label arrived in.
    window_ms: int = Field(default=30_000, ge=100)
    #: Event time a record may lag the watermark and still count in its window.
    lateness_ms: int = Field(default=5_000, ge=0)
    #: Wall time after which a silent partition stops holding windows open.
    idle_ms: int = Field(default=10_000, ge=100)
    #: How long (event time) a prediction waits for its label, and a label for its prediction.
    horizon_ms: int = Field(default=3_600_000, ge=1_000)
    #: Fewer labelled pairs in a window: counts and coverage only, no realised accuracy.
    min_count: int = Field(default=20, ge=1)
    #: Champion/challenger comparison: the error bound of its sequential verdict (the chance
    #: that it ever says better or worse between equally accurate models) ...
    compare_alpha: float = Field(default=0.05, gt=0, lt=1)
    #: ... and the fewest labelled pairs before it says either.
    compare_min_pairs: int = Field(default=100, ge=1)
    batch_max: int = Field(default=2000, ge=1)
    batch_timeout_ms: int = Field(default=50, ge=1)
    #: State and offsets are checkpointed to Redis this often, and every checkpoint_records records.
    checkpoint_ms: int = Field(default=250, ge=0)
    #: Fewer than the other services' 20,000: the join's Lua costs Redis more per record the
    #: more records one call holds (Lua's string table), and the write runs beside the
    #: handling of the next records, so smaller ones keep both busy.
    checkpoint_records: int = Field(default=5_000, ge=1)
    #: How often a worker looks for windows to close and emit.
    close_interval_ms: int = Field(default=500, ge=50)
    metrics_port: int = 9467
    #: Loopback by default; a container sets 0.0.0.0 so Prometheus can scrape it.
    metrics_host: str = "127.0.0.1"
