"""Errors of the model lifecycle; every one is a :class:`~rigwatch.exceptions.RigwatchError`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rigwatch.exceptions import RigwatchError

if TYPE_CHECKING:
    from rigwatch.lifecycle.guardrails import GuardrailResult

__all__ = ["GuardrailsFailed", "LifecycleError"]


class LifecycleError(RigwatchError):
    """A lifecycle operation was refused: unknown deployment or change, a reason not in the list,
    an approval by the proposer, nothing to roll back to."""


class GuardrailsFailed(LifecycleError):
    """A change was refused because checks failed; the refusal is on the audit topic.

    Parameters
    ----------
    version
        The refused model version.
    results
        Every check run, passed or not.
    operation
        What was refused: ``promotion`` (which ``force`` may override), ``creation`` or ``rollback``.
    """

    def __init__(
        self, version: str, results: Sequence[GuardrailResult], operation: str = "promotion"
    ) -> None:
        self.version = version
        self.results = tuple(results)
        self.operation = operation
        failed = "; ".join(f"{r.name}: {r.detail}" for r in self.results if not r.passed)
        super().__init__(f"{operation} of model {version} refused, guardrails failed: {failed}{self.hint}")

    @property
    def hint(self) -> str:
        """How to go ahead anyway, where one may."""
        if self.operation != "promotion":
            return ""
        return " (--force with a --reason promotes it anyway, audited as forced)"
