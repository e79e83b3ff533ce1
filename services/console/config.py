"""Console settings, read from ``RIGWATCH_CONSOLE_*`` environment variables."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rigwatch.exceptions import ConfigError
from services.console.roles import Role

__all__ = ["ConsoleSettings", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether *host* is a loopback address (or ``localhost``): only this machine can connect.

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class ConsoleSettings(BaseSettings):
    """How the console listens, whom it lets in, and how much it keeps."""

    model_config = SettingsConfigDict(env_prefix="RIGWATCH_CONSOLE_", frozen=True, extra="ignore")

    #: Loopback by default: the API changes deployments; a container sets 0.0.0.0 (with tokens).
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    #: API tokens (hashed, with principal and role): ``rigwatch console token add``.
    tokens_file: Path = Path(".rigwatch/console-tokens.json")
    #: A role every request without a token gets (``--allow-anonymous``); unset: a token is required.
    #: Refused unless the console listens on loopback only.
    allow_anonymous: Role | None = None
    #: Consumer group prefix; each console adds a unique suffix, because each must read every
    #: partition of the topics it follows (a shared group would split them between consoles).
    group: str = "rigwatch-console"
    #: The newest MetricWindows kept per (kind, subject).
    windows_per_subject: int = Field(default=360, ge=1)
    #: The newest alert transitions kept (``GET /alerts?state=recent``).
    recent_alerts: int = Field(default=1000, ge=1)
    #: Readings one ``POST /score`` may carry: scoring runs on the event loop (~10 µs a reading).
    max_readings: int = Field(default=10_000, ge=1)
    #: Largest request body accepted, MiB.
    max_body_mb: float = Field(default=16.0, gt=0)
    #: Model versions kept loaded for scoring.
    models_cached: int = Field(default=4, ge=1)
    #: Threads for blocking calls (lifecycle operations, model loads, the model store).
    threads: int = Field(default=4, ge=1)

    @field_validator("allow_anonymous", mode="before")
    @classmethod
    def _role(cls, value: Any) -> Any:
        if value is None or isinstance(value, Role):
            return value
        text = str(value).strip()
        # An environment variable cannot be None; set and empty means "off".
        return Role.parse(text) if text else None

    def check(self) -> ConsoleSettings:
        """*self*, if it is safe to serve.

        Raises
        ------
        ConfigError
            Anonymous access on an address other machines can reach.

        Examples
        --------
        >>> ConsoleSettings(allow_anonymous="viewer").check().allow_anonymous
        <Role.VIEWER: 1>
        >>> ConsoleSettings(host="0.0.0.0", allow_anonymous="viewer").check()
        Traceback (most recent call last):
        ...
        rigwatch.exceptions.ConfigError: anonymous access (viewer) is for loopback demos only: ...
        """
        if self.allow_anonymous is not None and not is_loopback(self.host):
            raise ConfigError(
                f"anonymous access ({self.allow_anonymous}) is for loopback demos only: the console"
                f" listens on {self.host}; bind 127.0.0.1, or give every user a token"
                " (`rigwatch console token add NAME --role ROLE`)"
            )
        return self
