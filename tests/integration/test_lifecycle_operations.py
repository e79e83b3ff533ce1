"""The lifecycle operations against the local broker: promote, roll back, approve, refuse, challenge."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from model_packages import tiny_package

from rigwatch.config import Settings
from rigwatch.data import FEATURES, Dataset
from rigwatch.lifecycle.audit import AuditLog
from rigwatch.lifecycle.deployments import control_producer, pending_changes, read_deployments, read_records
from rigwatch.lifecycle.exceptions import GuardrailsFailed, LifecycleError
from rigwatch.lifecycle.operations import (
    approve,
    create_deployment,
    ensure_deployment,
    history,
    promote,
    register_model,
    reject,
    rollback,
)
from rigwatch.model import ModelPackage, train
from rigwatch.model.calibration import ConfidenceCalibration
from rigwatch.model.compare import PairedCounts
from rigwatch.schemas import Codecs
from services.accuracy.handler import AccuracyHandler

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def candidate_dir(tmp_path_factory: pytest.TempPathFactory, real_dataset: Dataset) -> Path:
    """Another real model (split seed 7): a new version with the champion's features and classes."""
    return train(real_dataset, seed=7, num_threads=1).write(tmp_path_factory.mktemp("candidate"))


@pytest.fixture
def cooler(settings: Settings, candidate_dir: Path) -> tuple[str, str]:
    """Deployment ``cooler`` served by the session's real model; (champion, candidate) versions."""
    champion, _ = register_model(settings, settings.model_dir, name="cooler", actor="ana")
    candidate, _ = register_model(settings, candidate_dir, note="split seed 7", actor="ana")
    create_deployment(settings, "cooler", champion.version, actor="ana")
    return champion.version, candidate.version


def _actions(settings: Settings, deployment: str = "cooler") -> list[str]:
    return [e["action"] for e in AuditLog(settings).read(deployment=deployment)]


def test_promote_then_roll_back_changes_the_champion_and_both_are_audited(
    settings: Settings, cooler: tuple[str, str]
) -> None:
    champion, candidate = cooler

    promoted = promote(
        settings, "cooler", candidate[:6], reason="data_drift", comment="retrained", actor="ana"
    )
    after_promote = read_deployments(settings)["cooler"]
    rolled = rollback(settings, "cooler", reason="errors", actor="ben")
    after_rollback = read_deployments(settings)["cooler"]

    assert (after_promote["champion"], after_promote["previous_champion"]) == (candidate, champion)
    assert after_promote["change_id"] == promoted.record["change_id"]
    assert all(r.passed for r in promoted.guardrails) and len(promoted.guardrails) == 6
    assert (after_rollback["champion"], after_rollback["previous_champion"]) == (champion, candidate)
    assert after_rollback["actor"] == "ben" and rolled.event is not None

    events = AuditLog(settings).read(deployment="cooler")
    assert [e["action"] for e in events] == ["create", "promote", "rollback"]
    promote_event, rollback_event = events[1], events[2]
    assert (promote_event["before"], promote_event["after"], promote_event["actor"]) == (
        champion,
        candidate,
        "ana",
    )
    assert (promote_event["reason"], promote_event["comment"]) == ("data_drift", "retrained")
    assert {g["name"] for g in promote_event["guardrails"]} >= {"same_features", "same_classes"}
    assert (rollback_event["before"], rollback_event["after"], rollback_event["reason"]) == (
        candidate,
        champion,
        "errors",
    )
    registered = [e["model_version"] for e in AuditLog(settings).read() if e["action"] == "register"]
    assert registered == [champion, candidate]
    assert [e["action"] for e in history(settings, "cooler")] == ["create", "promote", "rollback"]


def test_a_rollback_needs_a_previous_champion(settings: Settings, cooler: tuple[str, str]) -> None:
    with pytest.raises(LifecycleError, match="deployment 'cooler' has no previous champion to roll back to"):
        rollback(settings, "cooler", actor="ben")
    with pytest.raises(LifecycleError, match="deployment 'heater' does not exist \\(deployments: cooler\\)"):
        rollback(settings, "heater", actor="ben")


def test_a_change_needing_approval_waits_for_another_actor(settings: Settings, candidate_dir: Path) -> None:
    champion, _ = register_model(settings, settings.model_dir, actor="ana")
    candidate, _ = register_model(settings, candidate_dir, actor="ana")
    create_deployment(settings, "cooler", champion.version, actor="ana", requires_approval=True)

    proposed = promote(settings, "cooler", candidate.version, reason="scheduled_refresh", actor="ana")
    change_id = proposed.record["change_id"]

    assert proposed.record["state"] == "pending"
    assert read_deployments(settings)["cooler"]["champion"] == champion.version
    assert list(pending_changes(settings)) == [change_id]
    with pytest.raises(LifecycleError, match=r"pending approval .*approve or reject it first"):
        promote(settings, "cooler", candidate.version, reason="other", actor="carl")

    with pytest.raises(LifecycleError, match=f"change {change_id} was proposed by 'ana'; another actor"):
        approve(settings, change_id, actor="ana")
    assert read_deployments(settings)["cooler"]["champion"] == champion.version

    approve(settings, change_id[:5], actor="ben", comment="checked the eval")

    state = read_deployments(settings)["cooler"]
    assert (state["champion"], state["previous_champion"], state["actor"]) == (
        candidate.version,
        champion.version,
        "ben",
    )
    assert pending_changes(settings) == {}
    events = AuditLog(settings).read(deployment="cooler")
    assert [(e["action"], e["actor"]) for e in events] == [
        ("create", "ana"),
        ("propose", "ana"),
        ("approval_refused", "ana"),
        ("approve", "ben"),
    ]
    assert "four eyes" in events[2]["comment"]
    # The approval is also written under the pending key, so compaction cannot revive the proposal.
    assert [r["state"] for r in read_records(settings) if r["change_id"] == change_id] == [
        "pending",
        "active",
        "active",
    ]


def test_a_rejected_change_leaves_the_champion(settings: Settings, candidate_dir: Path) -> None:
    champion, _ = register_model(settings, settings.model_dir, actor="ana")
    candidate, _ = register_model(settings, candidate_dir, actor="ana")
    create_deployment(settings, "cooler", champion.version, actor="ana", requires_approval=True)
    change_id = promote(settings, "cooler", candidate.version, reason="accuracy", actor="ana").record[
        "change_id"
    ]

    reject(settings, change_id, actor="ben", reason="accuracy", comment="worse on rig 3")

    assert read_deployments(settings)["cooler"]["champion"] == champion.version
    assert pending_changes(settings) == {}
    assert _actions(settings)[-1] == "reject"
    with pytest.raises(LifecycleError, match=f"no pending change '{change_id}'; pending: none"):
        approve(settings, change_id, actor="carl")


def test_a_candidate_missing_a_feature_is_refused_and_the_refusal_is_audited(
    settings: Settings, cooler: tuple[str, str], real_dataset: Dataset, tmp_path: Path
) -> None:
    champion, _ = cooler
    without = tiny_package(real_dataset, features=[f for f in FEATURES if f != "tsb_temp"])
    registered, _ = register_model(settings, without.write(tmp_path / "without-tsb"), actor="ana")

    with pytest.raises(GuardrailsFailed) as info:
        promote(settings, "cooler", registered.version, reason="other", actor="ana")

    assert "feature 'tsb_temp' missing from candidate" in str(info.value)
    assert read_deployments(settings)["cooler"]["champion"] == champion
    refusal = AuditLog(settings).read(deployment="cooler")[-1]
    assert (refusal["action"], refusal["model_version"], refusal["before"]) == (
        "guardrail_failed",
        registered.version,
        champion,
    )
    failed = [g for g in refusal["guardrails"] if not g["passed"]]
    assert failed == [
        {"name": "same_features", "passed": False, "detail": "feature 'tsb_temp' missing from candidate"}
    ]

    forced = promote(settings, "cooler", registered.version, reason="other", actor="ana", force=True)

    assert read_deployments(settings)["cooler"]["champion"] == registered.version
    assert forced.event is not None and forced.event["action"] == "forced"
    assert _actions(settings)[-2:] == ["guardrail_failed", "forced"]


def test_a_candidate_with_other_classes_is_refused(
    settings: Settings, cooler: tuple[str, str], real_dataset: Dataset, tmp_path: Path
) -> None:
    two = tiny_package(real_dataset, classes=("3", "20"))
    registered, _ = register_model(settings, two.write(tmp_path / "two-classes"), actor="ana")

    with pytest.raises(GuardrailsFailed, match=r"classes differ: candidate \('3', '20'\) vs champion"):
        promote(settings, "cooler", registered.version, reason="other", actor="ana")

    assert _actions(settings)[-1] == "guardrail_failed"


def test_ensure_creates_once_and_keeps_a_promotion(
    settings: Settings, candidate_dir: Path, real_model: ModelPackage
) -> None:
    first = ensure_deployment(settings, "cooler", settings.model_dir, actor="demo")
    candidate, _ = register_model(settings, candidate_dir, actor="ana")
    promote(settings, "cooler", candidate.version, reason="other", actor="ana")

    again = ensure_deployment(settings, "cooler", settings.model_dir, actor="demo")

    assert first.event is not None and again.event is None
    assert first.record["champion"] == real_model.version
    assert again.record["champion"] == candidate.version
    assert _actions(settings) == ["create", "promote"]


def test_the_cli_refuses_a_same_actor_approval_and_prints_the_audit_trail(
    settings: Settings, candidate_dir: Path
) -> None:
    env = settings.to_env() | {"RIGWATCH_ACTOR": "ana"}

    def rigwatch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rigwatch", *args], env=env, capture_output=True, text=True, timeout=120
        )

    assert (
        rigwatch("deploy", "create", "cooler", str(settings.model_dir), "--require-approval").returncode == 0
    )
    registered = rigwatch("models", "register", str(candidate_dir), "--note", "seed 7")
    assert registered.returncode == 0, registered.stderr
    version = registered.stdout.split()[2]
    proposed = rigwatch("deploy", "promote", "cooler", version, "--reason", "data_drift")
    assert proposed.returncode == 0, proposed.stderr
    assert "pending approval" in proposed.stdout
    change_id = proposed.stdout.split("change ")[1].split()[0]

    refused = rigwatch("deploy", "approve", change_id)
    approved = rigwatch("deploy", "approve", change_id, "--as", "ben")
    trail = rigwatch("audit", "--deployment", "cooler", "--since", "10m")

    assert refused.returncode == 2 and "another actor must approve it (four eyes)" in refused.stderr
    assert approved.returncode == 0, approved.stderr
    assert f"champion {Path(settings.model_dir).name}" not in approved.stdout
    lines = trail.stdout.splitlines()
    assert [line.split("\t")[2] for line in lines] == ["create", "propose", "approval_refused", "approve"]
    assert lines[-1].split("\t")[1] == "ben"
    bad = rigwatch("deploy", "promote", "cooler", version, "--reason", "drift")
    assert bad.returncode == 2 and "reason 'drift' is not one of: accuracy, data_drift" in bad.stderr
    assert os.path.isdir(settings.model_store / version)


def test_a_challenge_is_started_compared_and_ended_from_the_command_line(
    settings: Settings, cooler: tuple[str, str]
) -> None:
    champion, candidate = cooler
    env = settings.to_env() | {"RIGWATCH_ACTOR": "ana"}

    def rigwatch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rigwatch", *args], env=env, capture_output=True, text=True, timeout=120
        )

    bad = rigwatch("deploy", "challenger", "cooler", candidate, "--mode", "canary")
    assert bad.returncode == 2 and "canary percent None" in bad.stderr
    started = rigwatch("deploy", "challenger", "cooler", candidate[:6], "--mode", "shadow", "--auto-promote")
    assert started.returncode == 0, started.stderr
    assert f"challenger {candidate} (shadow, auto-promote at >= 200 pairs)" in started.stdout
    assert "no comparison window yet" in rigwatch("deploy", "compare", "cooler").stdout

    # A comparison window as the accuracy processor publishes it: 300 pairs, 60 won by the challenger alone.
    codecs = Codecs.load()
    counts = PairedCounts(
        both_correct=200, both_wrong=30, champion_only=10, challenger_only=60, predicted=320, agreements=250,
        champion_loss_sum=90.0, challenger_loss_sum=40.0, loss_diff_sq_sum=80.0,
    )  # fmt: skip
    handler = AccuracyHandler(
        codecs.prediction, codecs.actual, ("3", "20", "100"), ConfidenceCalibration.identity(),
        namespace="t", size_ms=30_000, horizon_ms=60_000, min_count=1,
    )  # fmt: skip
    counted = {"counts": counts.to_dict(), "estimated": [300.0, 290.0]}
    window = handler.comparison(f"cmp:{champion}/{candidate}", 0, counted, [counted])
    producer = control_producer(settings)
    producer.produce(
        settings.topics.metrics, codecs.metric_window.encode(window), key=f"comparison/{candidate}"
    )
    producer.flush()

    compared = rigwatch("deploy", "compare", "cooler")
    assert compared.returncode == 0, compared.stderr
    assert "verdict: better" in compared.stdout
    assert "labelled pairs 300: accuracy challenger 0.8667 vs champion 0.7000" in compared.stdout
    assert "challenger right alone 60, champion right alone 10" in compared.stdout
    ended = rigwatch("deploy", "challenger", "cooler", "--end", "--reason", "accuracy")
    assert ended.returncode == 0 and f"challenger {candidate} stopped" in ended.stdout
    assert _actions(settings)[-2:] == ["challenge", "end_challenge"]
