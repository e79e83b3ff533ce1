"""Alert rules from TOML: the shipped defaults, and errors that name the file, the rule and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rigwatch.exceptions import ConfigError
from services.alerts.handler import AlertEngine, AlertState
from services.alerts.rules import DEFAULT_RULES, Rule, RuleSet, Webhook, load_rules

DEFAULT_NAMES = [
    "drift_score",
    "feature_drift",
    "prediction_drift",
    "accuracy",
    "estimated_accuracy",
    "latency_p99",
    "data_errors",
    "stale",
    "humility",
    "challenger_better",
    "challenger_worse",
]
VALID: dict[str, Any] = {
    "name": "r1",
    "kind": "drift",
    "metric": "drift_score",
    "direction": "above",
    "warning": 1.0,
    "critical": 2.0,
    "message": "{value:.2f} {op} {threshold:g} ({subject})",
}


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v)  # strings, ints and floats are written the same in TOML


def _toml(*rules: dict[str, Any], webhook: dict[str, Any] | None = None) -> str:
    parts = []
    if webhook is not None:
        parts.append("[webhook]\n" + "".join(f"{k} = {_value(v)}\n" for k, v in webhook.items()))
    for rule in rules:
        parts.append("[[rules]]\n" + "".join(f"{k} = {_value(v)}\n" for k, v in rule.items()))
    return "\n".join(parts)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    message = str(info.value)
    assert message.startswith(f"rules file {path}: "), message
    return message


# ---------------------------------------------------------------- shipped defaults


def test_defaults_load() -> None:
    rules = load_rules()
    assert isinstance(rules, RuleSet)
    assert [r.name for r in rules.rules] == DEFAULT_NAMES
    assert rules.webhook is None
    assert rules.source == str(DEFAULT_RULES)
    assert load_rules(DEFAULT_RULES) == rules


def test_default_rules_fields() -> None:
    rules = {r.name: r for r in load_rules().rules}
    feature = rules["feature_drift"]
    assert (feature.metric, feature.prefix, feature.also, feature.related("tsb_temp")) == (
        "psi_ratio.*",
        "psi_ratio.",
        "psi.*",
        "psi.tsb_temp",
    )
    assert (feature.for_windows, feature.clear_for, feature.cooldown_s, feature.min_count) == (
        2,
        2,
        120.0,
        30,
    )
    accuracy = rules["accuracy"]
    assert (accuracy.direction, accuracy.warning, accuracy.critical) == ("below", 0.9, 0.8)
    assert (
        accuracy.level(0.95) == "ok"
        and accuracy.level(0.85) == "warning"
        and accuracy.level(0.5) == "critical"
    )
    assert rules["latency_p99"].warning == 1000.0 and isinstance(rules["latency_p99"].warning, float)
    assert {n for n, r in rules.items() if r.subjects == "model"} == {
        "estimated_accuracy",
        "latency_p99",
        "stale",
        "humility",
        "challenger_better",
        "challenger_worse",
    }
    assert all(
        r.subjects == "any"
        for n, r in rules.items()
        if n
        not in {
            "estimated_accuracy",
            "latency_p99",
            "stale",
            "humility",
            "challenger_better",
            "challenger_worse",
        }
    )
    assert {r.kind for r in rules.values()} == {"drift", "health", "accuracy", "comparison"}


@pytest.mark.parametrize("name", DEFAULT_NAMES)
def test_each_default_rule_message_formats_firing_and_resolved(name: str) -> None:
    rule = next(r for r in load_rules().rules if r.name == name)
    worst = rule.critical if rule.critical is not None else rule.warning
    # Past the worst threshold, and back on the healthy side of the warning one (signs differ).
    if rule.direction == "above":
        breach, healthy = worst + abs(worst) * 0.5, rule.warning - abs(rule.warning) * 0.5
    else:
        breach, healthy = worst - abs(worst) * 0.5, min(1.0, rule.warning + abs(rule.warning) * 0.05)
    item, metric = ("x", rule.metric[:-1] + "x") if rule.prefix else ("", rule.metric)
    engine = AlertEngine([rule])
    states: dict[str, AlertState] = {}
    out = []
    for k, value in enumerate([breach] * rule.for_windows + [healthy] * rule.clear_for):
        metrics = {metric: value} | ({rule.related(item): 0.25} if rule.also else {})
        window = {
            "kind": rule.kind,
            "subject": "v1",
            "window_start": 0,
            "window_end": 60_000 * (k + 1),
            "count": max(rule.min_count, 1),
            "metrics": metrics,
            "detail": None,
        }
        out += engine.evaluate(window, states)
    severity = "critical" if rule.critical is not None else "warning"
    assert [(a["state"], a["severity"]) for a in out] == [("firing", severity), ("resolved", "ok")]
    for alert in out:
        assert alert["message"].endswith("(model v1)"), alert["message"]
        assert "{" not in alert["message"] and "nan" not in alert["message"]
    assert out[1]["message"].startswith("resolved: ")


# ---------------------------------------------------------------- rule errors


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"metric": None}, ["rule 'r1'", "missing field 'metric'"]),
        ({"message": None}, ["rule 'r1'", "missing field 'message'"]),
        ({"warning": None}, ["rule 'r1'", "missing field 'warning'"]),
        ({"name": None}, ["rule '#1'", "missing field 'name'"]),
        ({"name": 5}, ["rule 5", "name = 5", "str"]),
        ({"warning": "high"}, ["rule 'r1'", "warning = 'high'"]),
        ({"warning": True}, ["rule 'r1'", "warning = True"]),
        ({"critical": False}, ["rule 'r1'", "critical = False"]),
        ({"cooldown_s": True}, ["rule 'r1'", "cooldown_s = True"]),
        ({"for": True}, ["rule 'r1'", "for = True"]),
        ({"for": 2.0}, ["rule 'r1'", "for = 2.0", "int"]),
        ({"min_count": "30"}, ["rule 'r1'", "min_count = '30'", "int"]),
        ({"message": 3}, ["rule 'r1'", "message = 3", "str"]),
        ({"subjects": ["model"]}, ["rule 'r1'", "subjects = ['model']", "str"]),
        ({"kind": "latency"}, ["rule 'r1'", "kind = 'latency'", "drift, health, accuracy"]),
        ({"direction": "up"}, ["rule 'r1'", "direction = 'up'", "'above' or 'below'"]),
        ({"subjects": "fleet"}, ["rule 'r1'", "subjects = 'fleet'", "model, rig, any"]),
        ({"for": 0}, ["rule 'r1'", "for = 0, expected >= 1"]),
        ({"clear_for": 0}, ["rule 'r1'", "clear_for = 0, expected >= 1"]),
        ({"min_count": -1}, ["rule 'r1'", "min_count = -1, expected >= 0"]),
        ({"cooldown_s": -5}, ["rule 'r1'", "cooldown_s = -5.0, expected >= 0"]),
        (
            {"warning": 2.0, "critical": 1.0},
            ["rule 'r1'", "critical = 1.0 is milder than warning = 2.0 (above)"],
        ),
        (
            {"direction": "below", "warning": 0.8, "critical": 0.9},
            ["rule 'r1'", "critical = 0.9 is milder than warning = 0.8 (below)"],
        ),
        ({"for_windows": 2}, ["rule 'r1'", "unknown field(s) for_windows"]),
        ({"severity": "x", "Warning": 1}, ["rule 'r1'", "unknown field(s) Warning, severity"]),
        ({"message": "{valu:.2f}"}, ["rule 'r1'", "message '{valu:.2f}'", "KeyError('valu')"]),
        ({"message": "{0}"}, ["rule 'r1'", "message '{0}'", "IndexError"]),
        ({"message": "{item:.2f}"}, ["rule 'r1'", "message '{item:.2f}'", "ValueError"]),
        ({"message": "unclosed {value"}, ["rule 'r1'", "message 'unclosed {value'"]),
        ({"metric": "psi_ratio.*", "also": "psi"}, ["rule 'r1'", "also and metric", "'.*'"]),
        ({"metric": "psi_ratio", "also": "psi.*"}, ["rule 'r1'", "also and metric", "'.*'"]),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else None,
)
def test_rule_errors_name_file_rule_and_field(
    tmp_path: Path, change: dict[str, Any], fragments: list[str]
) -> None:
    rule = {k: v for k, v in (VALID | change).items() if v is not None}
    message = _error(_write(tmp_path, _toml(rule)))
    for fragment in fragments:
        assert fragment in message, message


def test_error_names_the_bad_rule_among_good_ones(tmp_path: Path) -> None:
    rules = [VALID, VALID | {"name": "r2", "for": 0}, VALID | {"name": "r3"}]
    message = _error(_write(tmp_path, _toml(*rules)))
    assert "rule 'r2': for = 0" in message and "r1" not in message and "r3" not in message


def test_duplicate_rule_names(tmp_path: Path) -> None:
    rules = [VALID, VALID | {"name": "r2"}, VALID | {"metric": "prediction_drift"}]
    message = _error(_write(tmp_path, _toml(*rules)))
    assert "rule names must be unique" in message and "['r1']" in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[rules]\nname = 'x'\n", "not valid TOML"),
        ('[[rules]]\nname = "r1"\nname = "r2"\n', "not valid TOML"),
        ("", "expected at least one [[rules]] table"),
        ("[webhook]\nurl = 'http://x'\n", "expected at least one [[rules]] table"),
        ("rules = []\n", "expected at least one [[rules]] table"),
        ("[rules]\nname = 'r1'\n", "expected at least one [[rules]] table"),
    ],
    ids=["bad_header", "duplicate_key", "empty", "webhook_only", "empty_array", "table_not_array"],
)
def test_file_level_errors(tmp_path: Path, text: str, fragment: str) -> None:
    assert fragment in _error(_write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    message = _error(missing)
    assert "No such file" in message


def test_valid_rule_with_defaults_and_optional_fields(tmp_path: Path) -> None:
    minimal = {k: v for k, v in VALID.items() if k != "critical"}
    full = VALID | {
        "name": "r2",
        "metric": "psi_ratio.*",
        "also": "psi.*",
        "for": 3,
        "clear_for": 4,
        "min_count": 10,
        "cooldown_s": 30,
        "subjects": "rig",
        "warning": 1,
    }
    rules = load_rules(_write(tmp_path, _toml(minimal, full)))
    assert rules.rules == (
        Rule(
            name="r1",
            kind="drift",
            metric="drift_score",
            direction="above",
            warning=1.0,
            critical=None,
            message=VALID["message"],
        ),
        Rule(
            name="r2",
            kind="drift",
            metric="psi_ratio.*",
            direction="above",
            warning=1.0,
            critical=2.0,
            message=VALID["message"],
            min_count=10,
            for_windows=3,
            clear_for=4,
            cooldown_s=30.0,
            subjects="rig",
            also="psi.*",
        ),
    )
    assert isinstance(rules.rules[1].warning, float) and isinstance(rules.rules[1].cooldown_s, float)
    assert rules.source == str(tmp_path / "rules.toml")
    assert load_rules(str(tmp_path / "rules.toml")) == rules


def test_critical_equal_to_warning_is_allowed(tmp_path: Path) -> None:
    rule = VALID | {"direction": "below", "warning": 0.9, "critical": 0.9}
    (loaded,) = load_rules(_write(tmp_path, _toml(rule))).rules
    assert loaded.level(0.9) == "ok" and loaded.level(0.89) == "critical"


# ---------------------------------------------------------------- webhook


@pytest.mark.parametrize(
    ("webhook", "expected"),
    [
        ({"url": "http://127.0.0.1:8080/hook"}, Webhook("http://127.0.0.1:8080/hook", 2.0, 3)),
        ({"url": "http://h/x", "timeout_s": 5, "retries": 0}, Webhook("http://h/x", 5.0, 0)),
        ({"url": "http://h/x", "timeout_s": 0.5}, Webhook("http://h/x", 0.5, 3)),
    ],
)
def test_webhook_parsing(tmp_path: Path, webhook: dict[str, Any], expected: Webhook) -> None:
    rules = load_rules(_write(tmp_path, _toml(VALID, webhook=webhook)))
    assert rules.webhook == expected
    assert isinstance(rules.webhook.timeout_s, float)


@pytest.mark.parametrize(
    ("webhook", "fragment"),
    [
        ({"timeout_s": 2.0}, "webhook: missing field 'url'"),
        ({"url": 8080}, "webhook: url = 8080"),
        ({"url": "http://h", "timeout_s": True}, "webhook: timeout_s = True"),
        ({"url": "http://h", "timeout_s": "2s"}, "webhook: timeout_s = '2s'"),
        ({"url": "http://h", "retries": 1.5}, "webhook: retries = 1.5"),
        ({"url": "http://h", "retries": True}, "webhook: retries = True"),
    ],
)
def test_webhook_errors(tmp_path: Path, webhook: dict[str, Any], fragment: str) -> None:
    message = _error(_write(tmp_path, _toml(VALID, webhook=webhook)))
    assert fragment in message, message


# ---------------------------------------------------------------- malformed files: still a ConfigError


@pytest.mark.parametrize(
    "text",
    [
        "rules = [1, 2]\n",
        _toml(VALID | {"message": "{value[0]}"}),
        _toml(VALID | {"message": "{item.nope}"}),
        'webhook = "url"\n' + _toml(VALID),
    ],
    ids=["rules_not_tables", "message_index", "message_attribute", "webhook_not_table"],
)
def test_malformed_files_raise_config_error(tmp_path: Path, text: str) -> None:
    _error(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("webhook", "fragment"),
    [
        ({"url": ""}, "webhook: url = ''"),
        ({"url": "http://h", "retries": -1}, "retries = -1"),
        ({"url": "http://h", "timeout_s": -2}, "timeout_s = -2.0"),
        ({"url": "http://h", "timeout": 5}, "webhook: unknown field(s) timeout"),
    ],
)
def test_webhook_values_are_checked(tmp_path: Path, webhook: dict[str, Any], fragment: str) -> None:
    message = _error(_write(tmp_path, _toml(VALID, webhook=webhook)))
    assert fragment in message, message


def test_a_misspelt_table_and_a_nan_threshold_are_errors(tmp_path: Path) -> None:
    assert "unknown table(s) webhooks" in _error(
        _write(tmp_path, _toml(VALID) + '[webhooks]\nurl = "http://h"\n')
    )
    nan_warning = _toml(VALID).replace("warning = 1.0", "warning = nan")
    assert "thresholds must be finite" in _error(_write(tmp_path, nan_warning))
