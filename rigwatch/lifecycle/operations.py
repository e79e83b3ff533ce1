"""The lifecycle operations, one implementation each: the command line calls them, and so will the API.

Every operation checks first (names, reasons, versions, guardrails, who
approves), then writes the Deployment record(s) and waits for the broker, then
writes its audit event. A refusal writes nothing to ``rig.deployments``; a
failed guardrail and an approval by the proposer are audited as refusals.

Two operators changing the same deployment at the same moment both read the
same state and both write: the later record wins, and both are audited.
Kafka has no compare-and-set for this; the four-eyes rule and the one-pending-
change rule keep such races rare.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rigwatch.config import Settings
from rigwatch.data.columns import Dataset
from rigwatch.exceptions import ModelError, RigwatchError
from rigwatch.kafka import ReliableProducer
from rigwatch.lifecycle.audit import AuditLog, check_reason
from rigwatch.lifecycle.deployments import (
    ACTIVE,
    CANARY,
    MODES,
    PENDING,
    REJECTED,
    SHADOW,
    check_name,
    control_producer,
    current,
    pending,
    read_records,
)
from rigwatch.lifecycle.deployments import publish as publish_records
from rigwatch.lifecycle.exceptions import GuardrailsFailed, LifecycleError
from rigwatch.lifecycle.guardrails import (
    DEFAULT_TOLERANCE,
    EvalData,
    GuardrailResult,
    loads_and_scores,
    run_guardrails,
)
from rigwatch.lifecycle.store import ModelStore, Registration
from rigwatch.model.package import ModelPackage
from rigwatch.schemas import load_schema

__all__ = [
    "AUTO_ACTOR",
    "DEFAULT_DEPLOYMENT",
    "Change",
    "approve",
    "comment_model",
    "create_deployment",
    "end_challenge",
    "ensure_deployment",
    "history",
    "promote",
    "register_model",
    "registered_version",
    "reject",
    "rollback",
    "start_challenge",
]

log = logging.getLogger("rigwatch.lifecycle")

#: The deployment the demo and the stack create, and scorers follow by default.
DEFAULT_DEPLOYMENT = "cooler"
#: Who acts when the promotion gate acts on a comparison's verdict by itself.
AUTO_ACTOR = "rigwatch-auto"
#: A deployment without a challenger.
_NO_CHALLENGER: dict[str, Any] = {
    "challenger": None,
    "challenger_mode": None,
    "challenger_percent": None,
    "auto_promote": False,
    "min_pairs": 0,
}
#: Audit actions that change, or refuse to change, a deployment (``rigwatch deploy history``).
DEPLOYMENT_ACTIONS = frozenset(
    {
        "create",
        "challenge",
        "end_challenge",
        "promote",
        "propose",
        "forced",
        "approve",
        "reject",
        "rollback",
        "guardrail_failed",
        "approval_refused",
    }
)


@dataclass(frozen=True)
class Change:
    """What an operation did.

    Attributes
    ----------
    record
        The Deployment record written (state active, pending or rejected), or the
        existing one when nothing was written.
    guardrails
        The checks run before it, passed or not (empty when none ran).
    event
        The audit event written; None when nothing changed.
    """

    record: dict[str, Any]
    guardrails: tuple[GuardrailResult, ...] = ()
    event: dict[str, Any] | None = None


def _clients(settings: Settings) -> tuple[AuditLog, ReliableProducer]:
    """The audit log, checked, and the one producer an operation writes its records through."""
    producer = control_producer(settings)
    audit = AuditLog(settings, producer)
    audit.check()
    return audit, producer


# ---------------------------------------------------------------------------- models


def register_model(
    settings: Settings, path: str | os.PathLike[str], *, name: str | None = None, note: str = "", actor: str
) -> tuple[Registration, bool]:
    """Copy the package at *path* into the model store and audit it; whether it was new.

    Registering an identical package again changes nothing and audits nothing.
    """
    audit, _ = _clients(settings)
    registration, added = ModelStore(settings.model_store).put(path, name=name, note=note, actor=actor)
    if added:
        audit.record("register", actor, model_version=registration.version, comment=note or None)
    return registration, added


def registered_version(settings: Settings, path: str | os.PathLike[str], *, actor: str) -> str:
    """The version of the package at *path*, registered first unless the store has that version.

    A version already in the store is used as it is, even where the package's metadata
    differs (a retraining with the same seed has a new ``created_at``): the model text is the
    same, so the stored copy scores the same.
    """
    version = ModelPackage.load(path).version
    if version not in ModelStore(settings.model_store).versions():
        register_model(settings, path, actor=actor)
    return version


def comment_model(settings: Settings, version: str, text: str, *, actor: str) -> dict[str, Any]:
    """Put a comment on a registered version (an audit event); the event."""
    if not text.strip():
        raise LifecycleError("comment: the text is empty")
    registration = ModelStore(settings.model_store).get(version)
    audit, _ = _clients(settings)
    return audit.record("comment", actor, model_version=registration.version, comment=text)


# ---------------------------------------------------------------------------- deployments


def _now_ms() -> int:
    return int(time.time() * 1000)


def _new_change_id() -> str:
    return uuid.uuid4().hex[:12]


def _state(active: Mapping[str, dict[str, Any]], deployment: str) -> dict[str, Any]:
    if deployment not in active:
        known = ", ".join(sorted(active)) or "none yet"
        raise LifecycleError(
            f"deployment {deployment!r} does not exist (deployments: {known});"
            f" `rigwatch deploy create {deployment} VERSION` creates it"
        )
    return active[deployment]


def _record(
    state: str,
    deployment: str,
    change_id: str,
    champion: str,
    previous: str | None,
    *,
    requires_approval: bool,
    actor: str,
    reason: str,
    comment: str | None,
    before: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    carried = before or {}
    # A change of champion keeps the challenge set up beside it, unless the challenger is
    # the new champion: then the challenge is over.
    challenge = {k: carried.get(k, v) for k, v in _NO_CHALLENGER.items()}
    if challenge["challenger"] == champion:
        challenge = dict(_NO_CHALLENGER)
    return {
        "deployment": deployment,
        "change_id": change_id,
        "state": state,
        "champion": champion,
        "previous_champion": previous,
        **challenge,
        "requires_approval": requires_approval,
        "actor": actor,
        "reason": reason,
        "comment": comment,
        "time": _now_ms(),
    }


def _eval_data(eval_data: str | os.PathLike[str] | Dataset | EvalData | None) -> EvalData | None:
    if eval_data is None or isinstance(eval_data, EvalData):
        return eval_data
    if isinstance(eval_data, Dataset):
        return EvalData.from_dataset(eval_data)
    from rigwatch.data import load_path

    return EvalData.from_dataset(load_path(eval_data))


def _champion_package(store: ModelStore, version: str) -> ModelPackage | None:
    try:
        return store.load(version)
    except ModelError as exc:
        # A broken champion is no yardstick, and promoting away from it must stay possible.
        log.warning("champion %s does not load, the comparisons with it are skipped: %s", version, exc)
        return None


def _refuse(
    audit: AuditLog,
    actor: str,
    version: str,
    results: list[GuardrailResult],
    operation: str,
    **fields: str | None,
) -> GuardrailsFailed:
    audit.record(
        "guardrail_failed", actor, model_version=version, after=version, guardrails=results, **fields
    )
    return GuardrailsFailed(version, results, operation)


def _audited(
    audit: AuditLog, action: str, actor: str, record: Mapping[str, Any], **fields: Any
) -> dict[str, Any]:
    """The audit event of a change already written; says so if the audit write fails."""
    try:
        return audit.record(
            action, actor, deployment=record["deployment"], change_id=record["change_id"], **fields
        )
    except RigwatchError as exc:
        raise LifecycleError(
            f"deployment {record['deployment']!r} changed (change {record['change_id']}, state"
            f" {record['state']}), but its audit event could not be written: {exc}"
        ) from exc


def create_deployment(
    settings: Settings,
    name: str,
    version: str,
    *,
    actor: str,
    requires_approval: bool = False,
    reason: str = "other",
    comment: str | None = None,
    exist_ok: bool = False,
) -> Change:
    """Create deployment *name* served by *version* (a registered version or a unique prefix).

    The checks that need no champion run first (features in the schema, loads
    and scores, reference profile). ``exist_ok``: an existing deployment is left
    as it is and returned (a restarted demo must not undo a promotion).
    """
    check_name(name)
    check_reason(reason)
    audit, producer = _clients(settings)
    active = current(read_records(settings))
    if name in active:
        if exist_ok:
            return Change(active[name])
        raise LifecycleError(
            f"deployment {name!r} exists (champion {active[name]['champion']});"
            f" `rigwatch deploy promote {name} VERSION` changes it"
        )
    store = ModelStore(settings.model_store)
    target = store.resolve(version)
    results = run_guardrails(lambda: store.load(target), None, load_schema("SensorReading"))
    if not all(r.passed for r in results):
        raise _refuse(
            audit, actor, target, results, "creation", deployment=name, reason=reason, comment=comment
        )
    record = _record(
        ACTIVE,
        name,
        _new_change_id(),
        target,
        None,
        requires_approval=requires_approval,
        actor=actor,
        reason=reason,
        comment=comment,
    )
    publish_records(settings, [record], producer=producer)
    event = _audited(
        audit, "create", actor, record, model_version=target, reason=reason, comment=comment, after=target
    )
    return Change(record, tuple(results), event)


def ensure_deployment(
    settings: Settings,
    name: str,
    package: str | os.PathLike[str],
    *,
    actor: str,
    requires_approval: bool = False,
) -> Change:
    """Register the package at *package* (if new) and create deployment *name* with it (if missing).

    What the demo and the compose setup run at every start: the first start
    creates the deployment, later ones leave it (and any promotion since) alone.
    """
    return create_deployment(
        settings,
        name,
        registered_version(settings, package, actor=actor),
        actor=actor,
        requires_approval=requires_approval,
        comment=f"created with the package {Path(package).name}",
        exist_ok=True,
    )


def promote(
    settings: Settings,
    deployment: str,
    version: str,
    *,
    reason: str,
    comment: str | None = None,
    actor: str,
    force: bool = False,
    eval_data: str | os.PathLike[str] | Dataset | EvalData | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Change:
    """Make *version* the champion of *deployment*, or propose it where approval is required.

    The guardrails run first (:func:`~rigwatch.lifecycle.guardrails.run_guardrails`,
    against the champion, on *eval_data* when given). A failure refuses the
    promotion and audits ``guardrail_failed`` with every result; ``force``
    promotes anyway, audited as ``forced``. A deployment that requires approval
    gets a pending change (audited ``propose``) that another actor approves.

    Raises
    ------
    LifecycleError
        Unknown deployment, a reason not in the list, a change already pending,
        or *version* already serving.
    GuardrailsFailed
        A check failed and ``force`` was not given.
    ModelError
        *version* is not in the store.
    """
    check_name(deployment)
    check_reason(reason)
    audit, producer = _clients(settings)
    records = read_records(settings)
    state = _state(current(records), deployment)
    waiting = [c for c in pending(records).values() if c["deployment"] == deployment]
    if waiting:
        change = waiting[-1]
        raise LifecycleError(
            f"deployment {deployment!r} has change {change['change_id']} pending approval (model"
            f" {change['champion']}, proposed by {change['actor']}): approve or reject it first"
        )
    store = ModelStore(settings.model_store)
    target = store.resolve(version)
    champion = state["champion"]
    if target == champion:
        raise LifecycleError(f"model {target} already serves deployment {deployment!r}")
    results = run_guardrails(
        lambda: store.load(target),
        _champion_package(store, champion),
        load_schema("SensorReading"),
        _eval_data(eval_data),
        tolerance,
    )
    failed = not all(r.passed for r in results)
    fields = {"reason": reason, "comment": comment, "before": champion}
    if failed and not force:
        raise _refuse(audit, actor, target, results, "promotion", deployment=deployment, **fields)
    requires_approval = bool(state["requires_approval"])
    record = _record(
        PENDING if requires_approval else ACTIVE,
        deployment,
        _new_change_id(),
        target,
        champion,
        requires_approval=requires_approval,
        actor=actor,
        reason=reason,
        comment=comment,
        before=state,
    )
    publish_records(settings, [record], producer=producer)
    action = "forced" if failed else "propose" if requires_approval else "promote"
    event = _audited(
        audit, action, actor, record, model_version=target, after=target, guardrails=results, **fields
    )
    return Change(record, tuple(results), event)


def rollback(
    settings: Settings, deployment: str, *, reason: str = "other", comment: str | None = None, actor: str
) -> Change:
    """Serve the previous champion of *deployment* again (no approval: it served before).

    It must still load and score; the current champion becomes its previous
    one, so a second rollback undoes the first.
    """
    check_name(deployment)
    check_reason(reason)
    audit, producer = _clients(settings)
    state = _state(current(read_records(settings)), deployment)
    champion, previous = state["champion"], state["previous_champion"]
    if previous is None:
        raise LifecycleError(
            f"deployment {deployment!r} has no previous champion to roll back to (champion {champion})"
        )
    store = ModelStore(settings.model_store)
    loaded, _ = loads_and_scores(lambda: store.load(previous))
    fields = {"reason": reason, "comment": comment, "before": champion}
    if not loaded.passed:
        raise _refuse(audit, actor, previous, [loaded], "rollback", deployment=deployment, **fields)
    record = _record(
        ACTIVE,
        deployment,
        _new_change_id(),
        previous,
        champion,
        requires_approval=bool(state["requires_approval"]),
        actor=actor,
        reason=reason,
        comment=comment,
        before=state,
    )
    publish_records(settings, [record], producer=producer)
    event = _audited(audit, "rollback", actor, record, model_version=previous, after=previous, **fields)
    return Change(record, (loaded,), event)


def start_challenge(
    settings: Settings,
    deployment: str,
    version: str,
    *,
    mode: str,
    percent: float | None = None,
    auto_promote: bool = False,
    min_pairs: int = 0,
    reason: str = "other",
    comment: str | None = None,
    actor: str,
) -> Change:
    """Run *version* as the challenger of *deployment*, in *mode* (:data:`MODES`); replaces a running one.

    The guardrails that need no labels run first (same features and classes as the
    champion, loads and scores, reference profile and calibration); a failure refuses
    and is audited. ``canary`` needs *percent* (0-100, exclusive): the share of rigs'
    readings the challenger serves. With *auto_promote*, the promotion gate promotes
    it once the comparison says ``better`` on at least *min_pairs* labelled pairs.
    """
    check_name(deployment)
    check_reason(reason)
    if mode not in MODES:
        raise LifecycleError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    if mode == CANARY and (percent is None or not 0 < percent < 100):
        raise LifecycleError(f"canary percent {percent!r}: expected a share between 0 and 100 (exclusive)")
    if mode == SHADOW and percent is not None:
        raise LifecycleError(f"percent {percent!r}: only a canary serves a share (shadow serves none)")
    if min_pairs < 0:
        raise LifecycleError(f"min_pairs {min_pairs}: expected 0 or more")
    audit, producer = _clients(settings)
    state = _state(current(read_records(settings)), deployment)
    store = ModelStore(settings.model_store)
    target = store.resolve(version)
    if target == state["champion"]:
        raise LifecycleError(f"model {target} is the champion of {deployment!r}: it cannot challenge itself")
    results = run_guardrails(
        lambda: store.load(target), _champion_package(store, state["champion"]), load_schema("SensorReading")
    )
    fields = {"reason": reason, "comment": comment, "before": state["challenger"]}
    if not all(r.passed for r in results):
        raise _refuse(audit, actor, target, results, "challenge", deployment=deployment, **fields)
    challenge = {
        "challenger": target,
        "challenger_mode": mode,
        "challenger_percent": percent,
        "auto_promote": auto_promote,
        "min_pairs": min_pairs,
    }
    record = _challenge_record(state, challenge, actor=actor, reason=reason, comment=comment)
    publish_records(settings, [record], producer=producer)
    event = _audited(
        audit, "challenge", actor, record, model_version=target, after=target, guardrails=results, **fields
    )
    return Change(record, tuple(results), event)


def _challenge_record(
    state: Mapping[str, Any], challenge: Mapping[str, Any], *, actor: str, reason: str, comment: str | None
) -> dict[str, Any]:
    """The active record of a deployment whose challenge changes to *challenge*; its champion stays."""
    return _record(
        ACTIVE,
        state["deployment"],
        _new_change_id(),
        state["champion"],
        state["previous_champion"],
        requires_approval=bool(state["requires_approval"]),
        actor=actor,
        reason=reason,
        comment=comment,
        before={**state, **challenge},
    )


def end_challenge(
    settings: Settings, deployment: str, *, reason: str = "other", comment: str | None = None, actor: str
) -> Change:
    """Stop the challenger of *deployment*: its scorers go idle, the champion serves every reading."""
    check_name(deployment)
    check_reason(reason)
    audit, producer = _clients(settings)
    state = _state(current(read_records(settings)), deployment)
    challenger = state["challenger"]
    if challenger is None:
        raise LifecycleError(f"deployment {deployment!r} has no challenger")
    record = _challenge_record(state, _NO_CHALLENGER, actor=actor, reason=reason, comment=comment)
    publish_records(settings, [record], producer=producer)
    event = _audited(
        audit, "end_challenge", actor, record, model_version=challenger, reason=reason, comment=comment,
        before=challenger,
    )  # fmt: skip
    return Change(record, (), event)


def _pending_change(waiting: Mapping[str, dict[str, Any]], change_id: str) -> dict[str, Any]:
    matches = (
        [c for cid, c in waiting.items() if cid.startswith(change_id.strip())] if change_id.strip() else []
    )
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(f"{c['change_id']} ({c['deployment']}: {c['champion']})" for c in waiting.values())
    if matches:
        raise LifecycleError(f"change id {change_id!r} matches {len(matches)} pending changes: {listed}")
    raise LifecycleError(f"no pending change {change_id!r}; pending: {listed or 'none'}")


def approve(settings: Settings, change_id: str, *, actor: str, comment: str | None = None) -> Change:
    """Apply a pending change (its id, or a unique prefix); the approver must not be its proposer.

    Refused, and audited ``approval_refused``, when *actor* proposed it or the
    deployment's champion changed since (a rollback meanwhile): propose again.
    """
    audit, producer = _clients(settings)
    records = read_records(settings)
    change = _pending_change(pending(records), change_id)
    deployment = change["deployment"]
    state = _state(current(records), deployment)
    problem = None
    if actor == change["actor"]:
        problem = (
            f"change {change['change_id']} was proposed by {actor!r};"
            " another actor must approve it (four eyes)"
        )
    elif state["champion"] != change["previous_champion"]:
        problem = (
            f"deployment {deployment!r} changed since change {change['change_id']} was proposed (champion now"
            f" {state['champion']}, was {change['previous_champion']}): reject it and propose again"
        )
    if problem is not None:
        audit.record(
            "approval_refused",
            actor,
            deployment=deployment,
            model_version=change["champion"],
            change_id=change["change_id"],
            comment=problem,
        )
        raise LifecycleError(problem)
    record = {
        **change,
        "state": ACTIVE,
        "actor": actor,
        "comment": comment if comment is not None else change["comment"],
        "time": _now_ms(),
    }
    publish_records(settings, [record], settle=True, producer=producer)
    event = _audited(
        audit,
        "approve",
        actor,
        record,
        model_version=change["champion"],
        reason=change["reason"],
        comment=comment,
        before=state["champion"],
        after=change["champion"],
    )
    return Change(record, (), event)


def reject(
    settings: Settings, change_id: str, *, actor: str, reason: str, comment: str | None = None
) -> Change:
    """Refuse a pending change (its id, or a unique prefix); its proposer may withdraw it this way."""
    check_reason(reason)
    audit, producer = _clients(settings)
    change = _pending_change(pending(read_records(settings)), change_id)
    record = {
        **change,
        "state": REJECTED,
        "actor": actor,
        "reason": reason,
        "comment": comment,
        "time": _now_ms(),
    }
    publish_records(settings, [record], producer=producer)
    event = _audited(
        audit,
        "reject",
        actor,
        record,
        model_version=change["champion"],
        reason=reason,
        comment=comment,
        before=change["previous_champion"],
        after=change["champion"],
    )
    return Change(record, (), event)


def history(settings: Settings, deployment: str, since_ms: int | None = None) -> list[dict[str, Any]]:
    """The audit events that changed *deployment* or refused to, oldest first.

    From the audit trail, not the compacted deployments topic, which keeps only the latest records.
    """
    check_name(deployment)
    events = AuditLog(settings).read(deployment=deployment, since_ms=since_ms)
    return [e for e in events if e["action"] in DEPLOYMENT_ACTIONS]
