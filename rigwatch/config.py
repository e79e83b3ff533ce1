"""Settings every rigwatch process shares, read from ``RIGWATCH_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "Topics"]

#: Variables a child gets from this process's environment as they are.
_INHERITED = ("RIGWATCH_KAFKA_", "RIGWATCH_DATA", "RIGWATCH_CACHE_DIR")


class Settings(BaseSettings):
    """Where the broker, Redis, topics, model and run state are.

    ``bootstrap`` / ``redis_url`` unset means: use the local stack that
    ``rigwatch stack up`` started (its state is in ``run_dir``).
    """

    model_config = SettingsConfigDict(env_prefix="RIGWATCH_", frozen=True, extra="ignore")

    bootstrap: str | None = None
    redis_url: str | None = None
    topic_prefix: str = "rig."
    run_dir: Path = Path(".rigwatch/run")
    model_dir: Path = Path(".rigwatch/models/cooler")
    #: The model store: every registered package, one folder per version (``rigwatch models``).
    model_store: Path = Path(".rigwatch/store")

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    def to_env(self, **extra: str) -> dict[str, str]:
        """This process's environment with these settings, for a rigwatch child process.

        Other ``RIGWATCH_*`` variables are dropped, so the child sees exactly these
        settings plus *extra* (e.g. ``RIGWATCH_SCORER_GROUP``), the Kafka client
        properties ``RIGWATCH_KAFKA_*`` (``rigwatch.kafka.client_config``), which every
        child's clients need, and the data source (``RIGWATCH_DATA``, ``RIGWATCH_CACHE_DIR``).
        """
        # Kafka client properties (RIGWATCH_KAFKA_*: security settings) reach every child, and
        # so does the data source (a pump started by the demo must read what the model saw).
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("RIGWATCH_") or k.startswith(_INHERITED)
        }
        env |= {
            "RIGWATCH_TOPIC_PREFIX": self.topic_prefix,
            "RIGWATCH_RUN_DIR": str(self.run_dir.resolve()),
            "RIGWATCH_MODEL_DIR": str(self.model_dir.resolve()),
            "RIGWATCH_MODEL_STORE": str(self.model_store.resolve()),
        }
        if self.bootstrap:
            env["RIGWATCH_BOOTSTRAP"] = self.bootstrap
        if self.redis_url:
            env["RIGWATCH_REDIS_URL"] = self.redis_url
        return env | extra


@dataclass(frozen=True)
class Topics:
    """The topic names (README, "Data flow") under a prefix (default ``rig.``).

    Examples
    --------
    >>> Topics("rig.").predictions
    'rig.predictions'
    """

    prefix: str = "rig."

    @property
    def sensor_readings(self) -> str:
        return f"{self.prefix}sensor-readings"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}sensor-readings.dlq"

    @property
    def predictions(self) -> str:
        return f"{self.prefix}predictions"

    @property
    def predictions_shadow(self) -> str:
        """Predictions nobody is served: a shadow challenger's, and the champion's where a canary served."""
        return f"{self.prefix}predictions.shadow"

    @property
    def actuals(self) -> str:
        return f"{self.prefix}actuals"

    @property
    def metrics(self) -> str:
        return f"{self.prefix}metrics"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}alerts"

    @property
    def deployments(self) -> str:
        """Which version each deployment serves; compacted, key = deployment name."""
        return f"{self.prefix}deployments"

    @property
    def audit(self) -> str:
        """Every lifecycle change and refusal; kept forever."""
        return f"{self.prefix}audit"

    @property
    def scorer_status(self) -> str:
        """Scorers' heartbeats (the version each serves); compacted, key = scorer id."""
        return f"{self.prefix}scorer-status"

    def control(self) -> tuple[str, ...]:
        """The control-plane topics (model lifecycle), created with :meth:`configs`."""
        return (self.deployments, self.audit, self.scorer_status)

    def configs(self) -> dict[str, dict[str, str]]:
        """Topic-level settings the topics are created with; the others take the broker's defaults.

        Examples
        --------
        >>> Topics("rig.").configs()["rig.audit"]
        {'cleanup.policy': 'delete', 'retention.ms': '-1'}
        """
        compact = {"cleanup.policy": "compact"}
        return {
            self.deployments: dict(compact),
            # An audit trail that expires is not one: no time or size limit.
            self.audit: {"cleanup.policy": "delete", "retention.ms": "-1"},
            self.scorer_status: dict(compact),
        }

    def all(self) -> tuple[str, ...]:
        return (
            self.sensor_readings,
            self.dlq,
            self.predictions,
            self.predictions_shadow,
            self.actuals,
            self.metrics,
            self.alerts,
            *self.control(),
        )
