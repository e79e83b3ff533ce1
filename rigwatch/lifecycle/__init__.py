"""The model lifecycle's control plane: the model store, deployments, guardrails and the audit trail.

- :mod:`~rigwatch.lifecycle.store`: registered packages, one folder per version (``rigwatch models``);
- :mod:`~rigwatch.lifecycle.deployments`: which version serves each deployment (``rig.deployments``);
- :mod:`~rigwatch.lifecycle.guardrails`: the checks before a promotion;
- :mod:`~rigwatch.lifecycle.audit`: who did what and why (``rig.audit``);
- :mod:`~rigwatch.lifecycle.operations`: register, create, promote, roll back, approve, reject
  (``rigwatch deploy``), one implementation for the command line and the API.

The names below are imported on first use, so ``rigwatch --help`` (which
imports :mod:`rigwatch.lifecycle.cli`) does not load LightGBM or a Kafka client.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "REASONS",
    "AuditLog",
    "EvalData",
    "GuardrailResult",
    "GuardrailsFailed",
    "LifecycleError",
    "ModelStore",
    "Registration",
    "actor",
    "check_reason",
    "current",
    "pending",
    "pending_changes",
    "read_deployments",
    "run_guardrails",
]

_WHERE = {
    "REASONS": "audit",
    "AuditLog": "audit",
    "actor": "audit",
    "check_reason": "audit",
    "current": "deployments",
    "pending": "deployments",
    "pending_changes": "deployments",
    "read_deployments": "deployments",
    "GuardrailsFailed": "exceptions",
    "LifecycleError": "exceptions",
    "EvalData": "guardrails",
    "GuardrailResult": "guardrails",
    "run_guardrails": "guardrails",
    "ModelStore": "store",
    "Registration": "store",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
