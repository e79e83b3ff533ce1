"""Scorer settings, read from ``RIGWATCH_SCORER_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.scorer.humility import HumilityRules

__all__ = ["ScorerSettings"]

#: The humility defaults live with the rules; the settings only name them for the environment.
_RULES = HumilityRules()


class ScorerSettings(BaseSettings):
    """How one scorer process consumes, scores and reports."""

    model_config = SettingsConfigDict(env_prefix="RIGWATCH_SCORER_", frozen=True, extra="ignore")

    group: str = "rigwatch-scorer"
    #: The deployment followed (``rig.deployments``); unset means the only one there is.
    deployment: str | None = None
    #: The package a missing deployment is created with (named ``cooler`` when unnamed);
    #: unset means the common ``RIGWATCH_MODEL_DIR``.
    model_dir: Path | None = None
    #: Serve the deployment's shadow challenger (to rig.predictions.shadow), in group ``<group>-shadow``.
    shadow: bool = False
    batch_max: int = Field(default=2000, ge=1)
    batch_timeout_ms: int = Field(default=20, ge=1)
    #: Producer linger and consumer fetch wait: the scorer is latency-critical, so both are
    #: short. The local broker holds every fetch for the whole wait, data or not: 10 ms cost a
    #: fifth of its core per consumer, 20 ms half that, for at most 10 ms more per reading.
    linger_ms: int = Field(default=2, ge=0)
    fetch_wait_ms: int = Field(default=20, ge=0)
    metrics_port: int = 9464
    #: Loopback by default; a container sets 0.0.0.0 so Prometheus can scrape it.
    metrics_host: str = "127.0.0.1"

    # Humility rules (services.scorer.humility), checked by HumilityRules when the
    # scorer starts, so a bad value is a ConfigError naming the field and the value.
    #: A prediction whose confidence is below this is flagged ``uncertain``; empty
    #: (``RIGWATCH_SCORER_UNCERTAIN_BELOW=``) turns the rule off.
    uncertain_below: float | None = _RULES.uncertain_below
    #: A feature beyond its training [min, max] by more than this fraction of max - min
    #: is flagged ``outlying:<feature>``; empty turns the rule off.
    outlying_margin: float | None = _RULES.outlying_margin
    #: What each rule does to a row it fires on: ``none`` (flag only), ``override``
    #: (label becomes fallback_label, flag ``override:<rule>``) or ``reject`` (DLQ,
    #: reason ``humility:<rule>``).
    uncertain_action: str = _RULES.uncertain_action
    outlying_action: str = _RULES.outlying_action
    missing_action: str = _RULES.missing_action
    #: The label an override emits; required by any ``override``, one of the model's classes.
    fallback_label: str | None = None

    @field_validator("uncertain_below", "outlying_margin", "fallback_label", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # An environment variable cannot be None; set and empty is how it says "off".
        return None if isinstance(value, str) and not value.strip() else value
