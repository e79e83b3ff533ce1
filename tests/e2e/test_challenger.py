"""Champion and challenger on the real data: shadow and canary scoring, the paired verdict, the gate.

Every scenario runs the champion's scorers, shadow scorers, the accuracy processor
(which compares the two on the same events) and the promotion gate, with the pump
sending readings and their labels at once (wall-clock event time, 2 s windows).

- After a sensor recalibration (``cool_pwr_pct`` reads 2/3) the champion is confidently
  wrong; a challenger retrained on recalibrated data is judged ``better`` and, with
  ``auto_promote``, promoted by ``rigwatch-auto``.
- A challenger trained on shuffled labels is judged ``worse``: the challenge is ended,
  never promoted.
- A challenger of equal accuracy (another seed on the same data) stays ``inconclusive``.
- A canary serves its share of rigs; every reading still has exactly one served prediction.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from streams import assigned, collect

from loadgen.pump import PumpOptions, PumpReport, run_pump
from loadgen.scenarios import parse_scenario, recalibrated
from rigwatch.config import Settings
from rigwatch.kafka import StopFlag
from rigwatch.lifecycle.deployments import read_deployments
from rigwatch.lifecycle.operations import AUTO_ACTOR, create_deployment, registered_version, start_challenge
from rigwatch.lifecycle.status import latest_comparison
from rigwatch.model import train
from rigwatch.model.retrain import shuffled_labels
from rigwatch.schemas import Codecs
from services.scorer.follow import in_canary

pytestmark = pytest.mark.e2e

WINDOW_MS = 2_000
MIN_PAIRS = 100


@pytest.fixture(scope="module")
def challengers(tmp_path_factory: pytest.TempPathFactory, real_dataset) -> dict[str, Path]:
    """Packages: retrained after the recalibration, trained on shuffled labels, another seed."""
    made = {
        "retrained": train(recalibrated(real_dataset), seed=7, num_threads=1),
        "shuffled": train(shuffled_labels(real_dataset, seed=1), seed=7, num_threads=1),
        "equal": train(real_dataset, seed=7, num_threads=1),
    }
    out = {}
    for name, package in made.items():
        out[name] = tmp_path_factory.mktemp(name)
        package.write(out[name])
    return out


def _start(
    spawn, settings: Settings, champion_dir: Path, challenger_dir: Path, **challenge
) -> tuple[str, str]:
    champion = registered_version(settings, champion_dir, actor="test")
    challenger = registered_version(settings, challenger_dir, actor="test")
    create_deployment(settings, "cooler", champion, actor="test")
    start_challenge(settings, "cooler", challenger, actor="ops", reason="accuracy", **challenge)
    env = settings.to_env(RIGWATCH_SCORER_GROUP="cc-scorer", RIGWATCH_SCORER_METRICS_PORT="0")
    assigned(spawn(["scorer"], env))
    assigned(spawn(["scorer", "--shadow"], env))
    spawn(
        ["accuracy"],
        settings.to_env(
            RIGWATCH_ACCURACY_GROUP="cc-accuracy",
            RIGWATCH_ACCURACY_METRICS_PORT="0",
            RIGWATCH_ACCURACY_WINDOW_MS=str(WINDOW_MS),
            RIGWATCH_ACCURACY_LATENESS_MS="500",
            RIGWATCH_ACCURACY_IDLE_MS="3000",
            RIGWATCH_ACCURACY_CLOSE_INTERVAL_MS="200",
            RIGWATCH_ACCURACY_COMPARE_MIN_PAIRS=str(MIN_PAIRS),
        ),
    )
    spawn(["gate"], settings.to_env(RIGWATCH_GATE_METRICS_PORT="0"))
    return champion, challenger


def _pump(settings: Settings, dataset, count: int, *, rigs: int = 8, scenario: str | None = None):
    report: list[PumpReport] = []
    effects = parse_scenario(scenario)[1] if scenario else ()
    options = PumpOptions(rate=200, count=count, rigs=rigs, label_delay=0, effects=effects, seed=3)
    thread = threading.Thread(target=lambda: report.append(run_pump(settings, dataset, options, StopFlag())))
    thread.start()
    return thread, report


def _audit(settings: Settings) -> list[dict]:
    return [
        Codecs.load().audit_event.decode(m.value())
        for m in collect(settings.bootstrap, [settings.topics.audit], lambda s: True, settle=1)
    ]


def _until(what: Callable[[], bool], timeout: float, say: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, say()
        time.sleep(0.5)


def _served(settings: Settings, sent: int) -> list[dict]:
    """Every served prediction, once there is one per reading sent."""
    decode = Codecs.load().prediction.decode
    messages = collect(settings.bootstrap, [settings.topics.predictions], lambda s: len(s) >= sent, settle=1)
    return [decode(m.value()) for m in messages]


def test_a_challenger_retrained_after_a_recalibration_is_judged_better_and_promoted(
    settings: Settings, spawn, real_dataset, model_dir: Path, challengers: dict[str, Path]
) -> None:
    champion, challenger = _start(
        spawn,
        settings,
        model_dir,
        challengers["retrained"],
        mode="shadow",
        auto_promote=True,
        min_pairs=MIN_PAIRS,
    )
    pump, report = _pump(settings, real_dataset, 6_000, scenario="sensor-recalibration")
    _until(
        lambda: read_deployments(settings)["cooler"]["champion"] == challenger,
        90,
        lambda: f"not promoted: {read_deployments(settings)['cooler']}, audit {_audit(settings)}",
    )
    pump.join()
    sent = report[0].readings
    promoted = [e for e in _audit(settings) if e["action"] == "promote"]
    assert [(e["actor"], e["reason"], e["model_version"]) for e in promoted] == [
        (AUTO_ACTOR, "accuracy", challenger)
    ]
    comment = promoted[0]["comment"]
    assert "better" in comment and "labelled pairs" in comment
    assert all(g["passed"] for g in promoted[0]["guardrails"])
    pairs = int(comment.split(" labelled pairs")[0].rsplit(" ", 1)[1])
    assert pairs >= MIN_PAIRS
    print(f"\nretrained challenger promoted after {pairs} labelled pairs: {comment}")
    # Shadow: not one challenger prediction was ever served.
    served = _served(settings, sent)
    assert len({p["event_id"] for p in served}) == sent
    assert all(p["role"] == "champion" for p in served)
    assert {p["model_version"] for p in served} == {champion, challenger}  # the promotion switched it
    assert read_deployments(settings)["cooler"]["challenger"] is None


def test_a_challenger_trained_on_shuffled_labels_is_judged_worse_and_never_promoted(
    settings: Settings, spawn, real_dataset, model_dir: Path, challengers: dict[str, Path]
) -> None:
    champion, challenger = _start(
        spawn,
        settings,
        model_dir,
        challengers["shuffled"],
        mode="shadow",
        auto_promote=True,
        min_pairs=MIN_PAIRS,
    )
    pump, report = _pump(settings, real_dataset, 6_000)
    _until(
        lambda: read_deployments(settings)["cooler"]["challenger"] is None,
        90,
        lambda: f"challenge not ended: {read_deployments(settings)['cooler']}",
    )
    pump.join()
    sent = report[0].readings
    actions = [(e["action"], e["actor"]) for e in _audit(settings) if e["actor"] == AUTO_ACTOR]
    assert actions == [("end_challenge", AUTO_ACTOR)]
    assert read_deployments(settings)["cooler"]["champion"] == champion
    assert all(p["model_version"] == champion for p in _served(settings, sent))
    window = latest_comparison(settings, champion, challenger)
    assert window is not None and json.loads(window["detail"])["verdict"] == "worse"


def test_a_challenger_as_accurate_as_the_champion_stays_inconclusive(
    settings: Settings, spawn, real_dataset, model_dir: Path, challengers: dict[str, Path]
) -> None:
    champion, challenger = _start(
        spawn,
        settings,
        model_dir,
        challengers["equal"],
        mode="shadow",
        auto_promote=True,
        min_pairs=MIN_PAIRS,
    )
    pump, report = _pump(settings, real_dataset, 4_000)
    pump.join()
    sent = report[0].readings

    def compared() -> dict | None:
        return latest_comparison(settings, champion, challenger)

    # Wait for the comparison to cover (nearly) every reading: windows close behind the watermark.
    _until(
        lambda: (w := compared()) is not None and w["metrics"]["n"] >= 0.9 * sent,
        60,
        lambda: f"comparison short of {sent} pairs: {compared()}",
    )
    window = compared()
    assert window is not None
    detail = json.loads(window["detail"])
    assert detail["verdict"] == "inconclusive", (window["metrics"], detail)
    assert [e for e in _audit(settings) if e["actor"] == AUTO_ACTOR] == []
    state = read_deployments(settings)["cooler"]
    assert (state["champion"], state["challenger"]) == (champion, challenger)
    m = window["metrics"]
    print(
        f"\nequal challenger: {m['n']:.0f} pairs, accuracy {m['challenger_accuracy']:.4f} vs"
        f" {m['champion_accuracy']:.4f}, b={m['b']:.0f} c={m['c']:.0f}, sequential p {m['sequential_p']:.3g}"
    )


def test_a_canary_serves_its_share_of_rigs_and_every_reading_once(
    settings: Settings, spawn, real_dataset, model_dir: Path, challengers: dict[str, Path]
) -> None:
    percent, rigs = 30.0, 40
    champion, challenger = _start(
        spawn, settings, model_dir, challengers["equal"], mode="canary", percent=percent
    )
    pump, report = _pump(settings, real_dataset, 4_000, rigs=rigs)
    pump.join()
    sent = report[0].readings
    decode = Codecs.load().prediction.decode
    messages = collect(
        settings.bootstrap,
        [settings.topics.predictions],
        lambda seen: len(seen) >= sent,
        timeout=60,
        settle=2,
    )
    served: dict[str, dict] = {}
    for m in messages:
        p = decode(m.value())
        assert p["event_id"] not in served, "one served prediction per reading"
        served[p["event_id"]] = p
    assert len(served) == sent
    canary_rigs = {p["rig_id"] for p in served.values() if in_canary(p["rig_id"].encode(), percent)}
    for p in served.values():
        expected = (challenger, "challenger") if p["rig_id"] in canary_rigs else (champion, "champion")
        assert (p["model_version"], p["role"]) == expected
    share = len(canary_rigs) / len({p["rig_id"] for p in served.values()})
    # Per rig, so the share of rigs is binomial around P: within three standard deviations.
    assert abs(share - percent / 100) <= 3 * (percent / 100 * (1 - percent / 100) / rigs) ** 0.5, share
    canary_readings = sorted(e for e, p in served.items() if p["rig_id"] in canary_rigs)
    in_shadow = collect(
        settings.bootstrap,
        [settings.topics.predictions_shadow],
        lambda seen: len(seen) >= len(canary_readings),
        settle=1,
    )
    shadow = [decode(m.value()) for m in in_shadow]
    assert sorted(p["event_id"] for p in shadow) == canary_readings
    assert {(p["model_version"], p["role"]) for p in shadow} == {(champion, "champion")}
    print(f"\ncanary {percent:g} %: {len(canary_rigs)} of {rigs} rigs ({share:.0%}) served by the challenger")
