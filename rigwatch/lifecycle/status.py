"""What runs for a deployment: the last heartbeat per scorer, the latest champion/challenger comparison."""

from __future__ import annotations

import json
import time
from typing import Any

from rigwatch.config import Settings
from rigwatch.lifecycle._topic import bootstrap_of, read_all
from rigwatch.schemas import Codecs

__all__ = ["GONE_AFTER_MS", "latest_comparison", "scorers"]

#: A scorer silent this long (three heartbeats) counts as gone.
GONE_AFTER_MS = 15_000


def scorers(settings: Settings, deployment: str, now_ms: int | None = None) -> list[dict[str, Any]]:
    """The scorers of *deployment* heard from within :data:`GONE_AFTER_MS`, by id: their last heartbeat."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    last: dict[str, dict[str, Any]] = {}
    for beat in read_all(bootstrap_of(settings), settings.topics.scorer_status, Codecs.load().scorer_status):
        last[beat["scorer_id"]] = beat
    return sorted(
        (b for b in last.values() if b["deployment"] == deployment and now_ms - b["time"] <= GONE_AFTER_MS),
        key=lambda b: b["scorer_id"],
    )


def latest_comparison(settings: Settings, champion: str, challenger: str) -> dict[str, Any] | None:
    """The last ``kind=comparison`` MetricWindow of *challenger* against *champion* on ``rig.metrics``."""
    last = None
    for window in read_all(bootstrap_of(settings), settings.topics.metrics, Codecs.load().metric_window):
        if (
            window["kind"] == "comparison"
            and window["subject"] == challenger
            and json.loads(window["detail"] or "{}").get("champion") == champion
        ):
            last = window
    return last
