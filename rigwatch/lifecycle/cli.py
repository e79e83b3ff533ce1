"""``rigwatch models``, ``rigwatch deploy`` and ``rigwatch audit``: the lifecycle on the command line.

Each command calls one function of :mod:`rigwatch.lifecycle.operations` and
prints what it did; heavy imports happen inside the commands so ``--help`` is quick.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from rigwatch.config import Settings
from rigwatch.exceptions import RigwatchError

__all__ = ["audit_command", "deploy_app", "models_app"]

models_app = typer.Typer(
    help="The model store (RIGWATCH_MODEL_STORE, default .rigwatch/store): register packages, list, show,"
    " comment. A version is never overwritten.",
    no_args_is_help=True,
)
deploy_app = typer.Typer(
    help="Deployments on rig.deployments: which model version serves each. Every change and refusal"
    " is on rig.audit.",
    no_args_is_help=True,
)

REASON_HELP = "Why: accuracy, data_drift, errors, scheduled_refresh, scoring_speed, deprecation or other."
As = Annotated[
    str | None,
    typer.Option("--as", help="Who acts, for the audit trail. Default: RIGWATCH_ACTOR, else the OS user."),
]
Comment = Annotated[str | None, typer.Option(help="Free text recorded with the change.")]


def _fail(exc: RigwatchError) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg="red")
    return typer.Exit(code=2)


def _actor(as_name: str | None) -> str:
    from rigwatch.lifecycle.audit import actor

    try:
        return actor(as_name)
    except RigwatchError as exc:
        raise _fail(exc) from exc


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def _guardrail_lines(results: Iterable[Any], *, err: bool = False) -> None:
    for r in results:
        mark = typer.style("pass", fg="green") if r.passed else typer.style("FAIL", fg="red")
        typer.echo(f"  {mark}  {r.name}: {r.detail}", err=err)


def _rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table for people; tab-separated lines when piped (for scripts)."""
    if not sys.stdout.isatty():
        for row in rows:
            typer.echo("\t".join(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    Console().print(table, markup=False)


# ---------------------------------------------------------------------------- models


@models_app.command("register")
def models_register(
    path: Annotated[
        Path, typer.Argument(help="A model package folder (model.txt, metadata.json, reference.json).")
    ],
    name: Annotated[
        str | None, typer.Option(help="Name to register it under. Default: the package's name.")
    ] = None,
    note: Annotated[str, typer.Option(help="Why this version exists, for people.")] = "",
    as_: As = None,
) -> None:
    """Copy a package into the model store under its version; audited as `register` on rig.audit.

    The package must load. Registering the identical package again changes nothing; a package with
    the same version but other file contents is refused.
    """
    from rigwatch.lifecycle.operations import register_model

    who = _actor(as_)
    try:
        reg, added = register_model(Settings(), path, name=name, note=note, actor=who)
    except RigwatchError as exc:
        raise _fail(exc) from exc
    if added:
        typer.echo(f"registered {reg.name} {reg.version} -> {reg.path}")
    else:
        typer.echo(
            f"already registered: {reg.name} {reg.version} (by {reg.registered_by} at"
            f" {_when(reg.registered_at)} UTC); nothing changed"
        )


@models_app.command("list")
def models_list() -> None:
    """Every registered version, oldest first: version, name, when, by whom, test accuracy, note."""
    from rigwatch.lifecycle.store import ModelStore

    regs = ModelStore(Settings().model_store).list()
    if not regs:
        typer.echo(f"no models registered in {Settings().model_store}")
        return
    rows = [
        (
            r.version,
            r.name,
            _when(r.registered_at),
            r.registered_by,
            f"{r.test_metrics['accuracy']:.4f}" if "accuracy" in r.test_metrics else "-",
            r.note,
        )
        for r in regs
    ]
    _rows(("version", "name", "registered (UTC)", "by", "test accuracy", "note"), rows)


@models_app.command("show")
def models_show(
    version: Annotated[str, typer.Argument(help="A version, or a unique prefix of at least 4 digits.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """A registered version: features, classes, training data hash, params, test metrics, who, when, note."""
    from rigwatch.lifecycle.store import ModelStore

    try:
        reg = ModelStore(Settings().model_store).get(version)
    except RigwatchError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(reg.to_dict(), indent=2))
        return
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in reg.test_metrics.items())
    for label, value in (
        ("version", reg.version),
        ("name", reg.name),
        ("features", ", ".join(reg.features)),
        ("classes", ", ".join(reg.classes)),
        ("training data", reg.training_data_hash or "-"),
        ("test metrics", metrics or "-"),
        ("params", json.dumps(dict(reg.params), sort_keys=True)),
        ("registered", f"{_when(reg.registered_at)} UTC by {reg.registered_by}"),
        ("note", reg.note or "-"),
        ("path", str(reg.path)),
    ):
        typer.echo(f"{label:>14}  {value}")


@models_app.command("comment")
def models_comment(
    version: Annotated[str, typer.Argument(help="A registered version, or a unique prefix.")],
    text: Annotated[str, typer.Argument(help="The comment.")],
    as_: As = None,
) -> None:
    """Comment on a registered version: an audit event (action `comment`) on rig.audit."""
    from rigwatch.lifecycle.operations import comment_model

    who = _actor(as_)
    try:
        event = comment_model(Settings(), version, text, actor=who)
    except RigwatchError as exc:
        raise _fail(exc) from exc
    typer.echo(f"comment on {event['model_version']} by {who} recorded")


# ---------------------------------------------------------------------------- deploy


def _said(change: Any) -> None:
    r = change.record
    if change.event is None:
        typer.echo(f"deployment {r['deployment']} exists: champion {r['champion']}; nothing changed")
        return
    action, before = change.event["action"], change.event["before"]
    arrow = f"{before} -> {r['champion']}" if before else r["champion"]
    if r["state"] == "pending":
        typer.echo(
            f"deployment {r['deployment']}: change {r['change_id']} ({arrow}) is pending approval;"
            f" another actor runs `rigwatch deploy approve {r['change_id']}`"
        )
    elif r["state"] == "rejected":
        typer.echo(f"deployment {r['deployment']}: change {r['change_id']} ({arrow}) rejected")
    else:
        forced = " (forced past failed guardrails)" if action == "forced" else ""
        typer.echo(f"deployment {r['deployment']}: champion {arrow}{forced}, change {r['change_id']}")
    _guardrail_lines(change.guardrails)


def _refused(exc: RigwatchError) -> typer.Exit:
    from rigwatch.lifecycle.exceptions import GuardrailsFailed

    if isinstance(exc, GuardrailsFailed):
        typer.echo(f"model {exc.version}: guardrails", err=True)
        _guardrail_lines(exc.results, err=True)
        typer.secho(
            f"error: {exc.operation} of model {exc.version} refused (recorded on the audit topic){exc.hint}",
            err=True,
            fg="red",
        )
        return typer.Exit(code=2)
    return _fail(exc)


@deploy_app.command("create")
def deploy_create(
    name: Annotated[str, typer.Argument(help="The deployment's name, e.g. cooler.")],
    model: Annotated[
        str,
        typer.Argument(
            help="A registered version (or unique prefix), or a package folder to register first."
        ),
    ],
    require_approval: Annotated[
        bool, typer.Option("--require-approval", help="Promotions wait for another actor's approval.")
    ] = False,
    exist_ok: Annotated[
        bool, typer.Option("--exist-ok", help="A deployment that exists is left as it is (exit 0).")
    ] = False,
    reason: Annotated[str, typer.Option(help=REASON_HELP)] = "other",
    comment: Comment = None,
    as_: As = None,
) -> None:
    """Create a deployment served by a model version (after the checks that need no champion)."""
    from rigwatch.lifecycle.operations import create_deployment, registered_version

    who, settings = _actor(as_), Settings()
    try:
        version = registered_version(settings, model, actor=who) if Path(model).is_dir() else model
        change = create_deployment(
            settings,
            name,
            version,
            actor=who,
            requires_approval=require_approval,
            reason=reason,
            comment=comment,
            exist_ok=exist_ok,
        )
    except RigwatchError as exc:
        raise _refused(exc) from exc
    _said(change)


@deploy_app.command("promote")
def deploy_promote(
    name: Annotated[str, typer.Argument(help="The deployment.")],
    version: Annotated[
        str, typer.Argument(help="A registered version, or a unique prefix of at least 4 digits.")
    ],
    reason: Annotated[str, typer.Option(help=REASON_HELP)],
    comment: Comment = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if guardrails fail (audited as forced).")
    ] = False,
    eval_data: Annotated[
        Path | None,
        typer.Option(
            help="Labelled rows (per-cycle CSV with cool_cond_y, UCI folder or zip): candidate and champion"
            " accuracy compared on them."
        ),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(min=0, max=1, help="How much lower the candidate's accuracy may be.")
    ] = 0.01,
    as_: As = None,
) -> None:
    """Make VERSION the champion after the guardrails pass; with approval required, propose it.

    Guardrails: same features and order as the champion, each a numeric SensorReading field; same classes;
    the package loads and scores a sample; reference profile and calibration exist; with --eval-data,
    accuracy at most --tolerance below the champion's. A failure refuses the promotion and is audited.
    """
    from rigwatch.lifecycle.operations import promote

    who = _actor(as_)
    try:
        change = promote(
            Settings(),
            name,
            version,
            reason=reason,
            comment=comment,
            actor=who,
            force=force,
            eval_data=eval_data,
            tolerance=tolerance,
        )
    except RigwatchError as exc:
        raise _refused(exc) from exc
    _said(change)


@deploy_app.command("rollback")
def deploy_rollback(
    name: Annotated[str, typer.Argument(help="The deployment.")],
    reason: Annotated[str, typer.Option(help=REASON_HELP)] = "other",
    comment: Comment = None,
    as_: As = None,
) -> None:
    """Serve the previous champion again (no approval needed: it served before); audited as `rollback`."""
    from rigwatch.lifecycle.operations import rollback

    who = _actor(as_)
    try:
        change = rollback(Settings(), name, reason=reason, comment=comment, actor=who)
    except RigwatchError as exc:
        raise _refused(exc) from exc
    _said(change)


@deploy_app.command("challenger")
def deploy_challenger(
    name: Annotated[str, typer.Argument(help="The deployment.")],
    version: Annotated[
        str | None,
        typer.Argument(help="A registered version (or unique prefix); omit with --end."),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="shadow: scored on every reading by `rigwatch scorer --shadow`, never served"
            " (rig.predictions.shadow); canary: serves --percent of rigs on rig.predictions."
        ),
    ] = "shadow",
    percent: Annotated[
        float | None, typer.Option(help="Canary: the share of rigs (by key hash) it serves, 0-100.")
    ] = None,
    auto_promote: Annotated[
        bool,
        typer.Option(
            "--auto-promote",
            help="Promote it by itself (actor rigwatch-auto) when the comparison says better on at least"
            " --min-pairs labelled pairs and the guardrails pass; end the challenge when it says worse.",
        ),
    ] = False,
    min_pairs: Annotated[
        int, typer.Option(min=0, help="The fewest labelled pairs a verdict needs to act on.")
    ] = 200,
    end: Annotated[bool, typer.Option("--end", help="Stop the running challenger instead.")] = False,
    reason: Annotated[str, typer.Option(help=REASON_HELP)] = "other",
    comment: Comment = None,
    as_: As = None,
) -> None:
    """Run VERSION beside the champion (shadow or canary) and compare them on the same readings; audited.

    The label-free guardrails run first (features, classes, loads and scores, reference and
    calibration). `rigwatch deploy compare NAME` shows the verdict.
    """
    from rigwatch.lifecycle.operations import end_challenge, start_challenge

    who = _actor(as_)
    try:
        if end:
            change = end_challenge(Settings(), name, reason=reason, comment=comment, actor=who)
            typer.echo(f"deployment {name}: challenger {change.event and change.event['before']} stopped")
            return
        if version is None:
            raise typer.BadParameter("give the challenger's VERSION (or --end)")
        change = start_challenge(
            Settings(),
            name,
            version,
            mode=mode,
            percent=percent,
            auto_promote=auto_promote,
            min_pairs=min_pairs,
            reason=reason,
            comment=comment,
            actor=who,
        )
    except RigwatchError as exc:
        raise _refused(exc) from exc
    r = change.record
    share = f" on {r['challenger_percent']:g} % of rigs" if r["challenger_mode"] == "canary" else ""
    gate = f", auto-promote at >= {r['min_pairs']} pairs" if r["auto_promote"] else ""
    typer.echo(
        f"deployment {name}: challenger {r['challenger']} ({r['challenger_mode']}{share}{gate})"
        f" beside champion {r['champion']}, change {r['change_id']}"
    )
    _guardrail_lines(change.guardrails)


@deploy_app.command("compare")
def deploy_compare(
    name: Annotated[str, typer.Argument(help="The deployment.")],
    as_json: Annotated[bool, typer.Option("--json", help="The latest comparison window as JSON.")] = False,
) -> None:
    """The challenger against the champion on the same events: the verdict with its figures.

    From the accuracy processor's latest comparison window (kind=comparison on rig.metrics):
    labelled pairs, each model's accuracy and log loss, discordant pairs, McNemar's exact p,
    the always-valid p of the sequential test the verdict rests on, and while inconclusive
    the pairs still needed if the rates held.
    """
    from rigwatch.lifecycle.deployments import read_deployments
    from rigwatch.lifecycle.exceptions import LifecycleError
    from rigwatch.lifecycle.status import latest_comparison

    settings = Settings()
    try:
        state = read_deployments(settings).get(name)
        if state is None:
            raise LifecycleError(f"no deployment {name!r}")
        champion, challenger = state["champion"], state.get("challenger")
        if challenger is None:
            raise LifecycleError(
                f"deployment {name!r} has no challenger: `rigwatch deploy challenger {name} VERSION`"
            )
        window = latest_comparison(settings, champion, challenger)
    except RigwatchError as exc:
        raise _fail(exc) from exc
    if window is None:
        typer.echo(
            f"challenger {challenger} vs champion {champion}: no comparison window yet (labels pending?)"
        )
        return
    if as_json:
        typer.echo(json.dumps(window | {"detail": json.loads(window["detail"] or "{}")}, indent=2))
        return
    m, detail = window["metrics"], json.loads(window["detail"] or "{}")

    def fig(key: str, fmt: str = ".4f") -> str:
        return format(m[key], fmt) if key in m else "-"

    typer.echo(
        f"challenger {challenger} vs champion {champion} ({state['challenger_mode']}),"
        f" up to {_when(window['window_end'])} UTC"
    )
    typer.echo(f"verdict: {detail.get('verdict')} ({detail.get('reason')})")
    typer.echo(
        f"labelled pairs {fig('n', '.0f')}: accuracy challenger {fig('challenger_accuracy')} vs champion"
        f" {fig('champion_accuracy')}; log loss {fig('challenger_log_loss')} vs {fig('champion_log_loss')}"
    )
    typer.echo(
        f"discordant: challenger right alone {fig('c', '.0f')}, champion right alone {fig('b', '.0f')};"
        f" McNemar exact p {fig('mcnemar_p', '.3g')}; sequential p {fig('sequential_p', '.3g')}"
    )
    typer.echo(
        f"predicted pairs {fig('predicted', '.0f')}, agreement {fig('agreement', '.3f')}; estimated"
        f" accuracy challenger {fig('estimated_challenger_accuracy', '.3f')}"
        f" vs champion {fig('estimated_champion_accuracy', '.3f')}"
    )
    if detail.get("n_needed"):
        typer.echo(f"labelled pairs still needed at these rates: {detail['n_needed']}")
    typer.echo(f"method: {detail.get('method')}")


@deploy_app.command("approve")
def deploy_approve(
    change_id: Annotated[str, typer.Argument(help="The pending change's id (or a unique prefix).")],
    comment: Comment = None,
    as_: As = None,
) -> None:
    """Apply a pending change; refused when the approver is its proposer (four eyes)."""
    from rigwatch.lifecycle.operations import approve

    who = _actor(as_)
    try:
        change = approve(Settings(), change_id, actor=who, comment=comment)
    except RigwatchError as exc:
        raise _fail(exc) from exc
    _said(change)


@deploy_app.command("reject")
def deploy_reject(
    change_id: Annotated[str, typer.Argument(help="The pending change's id (or a unique prefix).")],
    reason: Annotated[str, typer.Option(help=REASON_HELP)],
    comment: Comment = None,
    as_: As = None,
) -> None:
    """Refuse a pending change (its proposer may withdraw it this way)."""
    from rigwatch.lifecycle.operations import reject

    who = _actor(as_)
    try:
        change = reject(Settings(), change_id, actor=who, reason=reason, comment=comment)
    except RigwatchError as exc:
        raise _fail(exc) from exc
    _said(change)


SinceOption = Annotated[
    str | None,
    typer.Option(help="Only from then on: a span back from now (10m, 2h, 1d) or an ISO time (UTC)."),
]


def _events(events: Sequence[Mapping[str, Any]], as_json: bool) -> None:
    if as_json:
        for e in events:
            typer.echo(json.dumps(e))
        return
    rows = []
    for e in events:
        change = f"{e['before'] or '-'} -> {e['after']}" if e["after"] else e["model_version"] or ""
        failed = [g["name"] for g in e["guardrails"] if not g["passed"]]
        detail = "; ".join(
            part
            for part in (
                e["comment"] or "",
                f"failed: {', '.join(failed)}" if failed else "",
                f"change {e['change_id']}" if e["change_id"] else "",
            )
            if part
        )
        rows.append(
            (
                _when(e["time"]),
                e["actor"],
                e["action"],
                e["deployment"] or "",
                change,
                e["reason"] or "",
                detail,
            )
        )
    _rows(("time (UTC)", "actor", "action", "deployment", "version", "reason", "detail"), rows)


@deploy_app.command("status")
def deploy_status(name: Annotated[str, typer.Argument(help="The deployment.")]) -> None:
    """The champion, and the version each running scorer serves now (from their heartbeats, every 5 s)."""
    from rigwatch.lifecycle.deployments import read_deployments
    from rigwatch.lifecycle.exceptions import LifecycleError
    from rigwatch.lifecycle.status import scorers

    settings = Settings()
    try:
        state = read_deployments(settings).get(name)
        running = scorers(settings, name)
    except RigwatchError as exc:
        raise _fail(exc) from exc
    if state is None:
        raise _fail(
            LifecycleError(f"no deployment {name!r}; `rigwatch deploy create {name} VERSION` makes one")
        )
    typer.echo(f"deployment {name}: champion {state['champion']} (previous {state.get('previous_champion')})")
    if state.get("challenger"):
        share = f" {state['challenger_percent']:g} %" if state["challenger_mode"] == "canary" else ""
        typer.echo(f"challenger {state['challenger']} ({state['challenger_mode']}{share})")
    if not running:
        typer.echo("no scorer of it heard from in the last 15 s")
        return
    now_ms = int(time.time() * 1000)
    _rows(
        ("scorer", "serves", "group", "up since (UTC)", "last heard"),
        [
            (
                b["scorer_id"],
                b["version"] or "(loading)",
                b["group"],
                _when(b["started"]),
                f"{(now_ms - b['time']) / 1000:.1f} s ago",
            )
            for b in running
        ],
    )


@deploy_app.command("history")
def deploy_history(
    name: Annotated[str, typer.Argument(help="The deployment.")],
    since: SinceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """Every change of a deployment and every refusal, oldest first (from the audit trail)."""
    from rigwatch.lifecycle.audit import parse_since
    from rigwatch.lifecycle.operations import history

    try:
        events = history(Settings(), name, since_ms=parse_since(since) if since else None)
    except RigwatchError as exc:
        raise _fail(exc) from exc
    if not events and not as_json:
        typer.echo(f"no changes of deployment {name} on the audit trail")
        return
    _events(events, as_json)


def audit_command(
    deployment: Annotated[str | None, typer.Option(help="Only this deployment's events.")] = None,
    since: SinceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """Print the audit trail (rig.audit), oldest first: every change, comment and refusal, who and why.

    Registrations, promotions, approvals, rejections, rollbacks, comments, and every refusal with its
    guardrail results.
    """
    from rigwatch.lifecycle.audit import AuditLog, parse_since

    try:
        events = AuditLog(Settings()).read(
            deployment=deployment, since_ms=parse_since(since) if since else None
        )
    except RigwatchError as exc:
        raise _fail(exc) from exc
    if not events and not as_json:
        typer.echo("no audit events")
        return
    _events(events, as_json)
