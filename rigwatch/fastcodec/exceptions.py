"""Errors of the fast codec paths."""

from __future__ import annotations

from rigwatch.exceptions import ConfigError

__all__ = ["UnsupportedSchemaError"]


class UnsupportedSchemaError(ConfigError):
    """A schema uses a shape the fast path was not built for; use :class:`~rigwatch.codec.Codec`."""
