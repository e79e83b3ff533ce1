"""The promotion gate's pure decision: a comparison window and the deployments in, an action (or none) out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rigwatch.model.compare import BETTER, WORSE

__all__ = ["Action", "decide"]


@dataclass(frozen=True)
class Action:
    """What the gate does to *deployment*: ``promote`` its challenger, or ``end`` the challenge."""

    kind: str
    deployment: str
    challenger: str
    comment: str


def decide(window: Mapping[str, Any], deployments: Mapping[str, Mapping[str, Any]]) -> Action | None:
    """The action a ``kind=comparison`` MetricWindow calls for, if any.

    Only a deployment that runs this very challenger against this very champion with
    ``auto_promote`` set is acted on, and only on a decided verdict (``better`` or
    ``worse``) over at least its ``min_pairs`` labelled pairs. Once acted on, the
    deployment no longer matches, so a window seen again does nothing.

    Examples
    --------
    >>> window = {"kind": "comparison", "subject": "b", "metrics": {"n": 300.0, "verdict": 1.0},
    ...           "detail": json.dumps({"champion": "a", "challenger": "b", "verdict": "better"})}
    >>> cooler = {"champion": "a", "challenger": "b", "auto_promote": True, "min_pairs": 200}
    >>> decide(window, {"cooler": cooler}).kind
    'promote'
    >>> decide(window, {"cooler": cooler | {"min_pairs": 500}}) is None
    True
    """
    if window.get("kind") != "comparison":
        return None
    detail = json.loads(window.get("detail") or "{}")
    verdict, champion, challenger = detail.get("verdict"), detail.get("champion"), detail.get("challenger")
    if verdict not in (BETTER, WORSE):
        return None
    m = window["metrics"]
    n = int(m.get("n", 0))
    for name, state in sorted(deployments.items()):
        if not (state.get("auto_promote") and state.get("challenger") == challenger):
            continue
        if state.get("champion") != champion or n < int(state.get("min_pairs") or 0):
            continue
        figures = (
            f"{n} labelled pairs: challenger accuracy {m.get('challenger_accuracy', float('nan')):.4f},"
            f" champion {m.get('champion_accuracy', float('nan')):.4f}, discordant b={m.get('b', 0):.0f}"
            f" c={m.get('c', 0):.0f}, sequential p={m.get('sequential_p', float('nan')):.3g},"
            f" McNemar p={m.get('mcnemar_p', float('nan')):.3g}; {detail.get('method', '')}"
        )
        kind = "promote" if verdict == BETTER else "end"
        return Action(
            kind, name, challenger, f"auto: challenger {verdict} than champion {champion} on {figures}"
        )
    return None
