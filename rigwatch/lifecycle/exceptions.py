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
    """A promotion was refused because checks failed; the refusal is on the audit topic.

    Parameters
    ----------
    version
        The refused candidate.
    results
        Every check run, passed or not.
    """

    def __init__(self, version: str, results: Sequence[GuardrailResult]) -> None:
        self.version = version
        self.results = tuple(results)
        failed = "; ".join(f"{r.name}: {r.detail}" for r in self.results if not r.passed)
        super().__init__(
            f"model {version} refused, guardrails failed: {failed}"
            " (--force --reason R promotes it anyway, audited as forced)"
        )
