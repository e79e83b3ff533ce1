"""Alert rules: what to watch, when to fire and resolve; loaded from a TOML file.

The shipped defaults, with every field explained, are ``services/alerts/default_rules.toml``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rigwatch.exceptions import ConfigError
from rigwatch.windowing import is_segment

__all__ = ["DEFAULT_RULES", "SEVERITIES", "Rule", "RuleSet", "Webhook", "load_rules"]

DEFAULT_RULES = Path(__file__).with_name("default_rules.toml")
#: Severities in rising order: green, orange, red.
SEVERITIES = ("ok", "warning", "critical")
_KINDS = ("drift", "health", "accuracy", "comparison")
_SUBJECTS = ("model", "rig", "any")


@dataclass(frozen=True)
class Rule:
    """One metric of one window kind, with thresholds and the hysteresis around them."""

    name: str
    kind: str
    metric: str
    direction: str
    warning: float
    critical: float | None
    message: str
    min_count: int = 0
    for_windows: int = 1
    #: Consecutive critical windows that fire at once (strong evidence need not wait ``for``).
    for_critical: int | None = None
    clear_for: int = 1
    cooldown_s: float = 0.0
    subjects: str = "any"
    also: str | None = None

    @property
    def prefix(self) -> str | None:
        """For a ``name.*`` metric, ``name.``; else None."""
        return self.metric[:-1] if self.metric.endswith(".*") else None

    def items(self, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
        """``(item, metric name)`` this rule watches in a window's metrics (item "" for a plain metric)."""
        prefix = self.prefix
        if prefix is None:
            return [("", self.metric)] if self.metric in metrics else []
        return [(name[len(prefix) :], name) for name in sorted(metrics) if name.startswith(prefix)]

    def related(self, item: str) -> str:
        """The ``also`` metric that goes with *item*."""
        also = self.also or ""
        return also[:-1] + item if also.endswith(".*") else also

    def applies_to(self, subject: str) -> bool:
        """Whether windows of *subject* (a model version or ``rig:<id>``) are watched."""
        is_rig = is_segment(subject)
        return self.subjects == "any" or (self.subjects == "rig") == is_rig

    def level(self, value: float) -> str:
        """``ok``, ``warning`` or ``critical`` for *value*."""
        breach = (lambda t: value > t) if self.direction == "above" else (lambda t: value < t)
        if self.critical is not None and breach(self.critical):
            return "critical"
        return "warning" if breach(self.warning) else "ok"

    def threshold(self, severity: str) -> float:
        """The threshold of *severity* (the warning one for ``ok``)."""
        return self.critical if severity == "critical" and self.critical is not None else self.warning


@dataclass(frozen=True)
class Webhook:
    """Where published alerts are also POSTed as JSON."""

    url: str
    timeout_s: float = 2.0
    retries: int = 3


@dataclass(frozen=True)
class RuleSet:
    """The rules of one file and its optional webhook."""

    rules: tuple[Rule, ...]
    webhook: Webhook | None
    source: str


def _field(
    where: str, table: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...
) -> Any:
    if name not in table:
        if default is ...:
            raise ConfigError(f"{where}: missing field {name!r}")
        return default
    value = table[name]
    # bool is an int in Python; a threshold of `true` is a mistake, not 1.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(f"{where}: {name} = {value!r}, expected {kind}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: {name} = {value!r}, expected {getattr(kind, '__name__', kind)}")
    return value


def _rule(index: int, table: Mapping[str, Any]) -> Rule:
    name = table.get("name", f"#{index + 1}")
    where = f"rule {name!r}"
    number = (int, float)
    rule = Rule(
        name=_field(where, table, "name", str),
        kind=_field(where, table, "kind", str),
        metric=_field(where, table, "metric", str),
        direction=_field(where, table, "direction", str),
        warning=float(_field(where, table, "warning", number)),
        critical=(None if (c := _field(where, table, "critical", number, None)) is None else float(c)),
        message=_field(where, table, "message", str),
        min_count=_field(where, table, "min_count", int, 0),
        for_windows=_field(where, table, "for", int, 1),
        for_critical=_field(where, table, "for_critical", int, None),
        clear_for=_field(where, table, "clear_for", int, 1),
        cooldown_s=float(_field(where, table, "cooldown_s", number, 0.0)),
        subjects=_field(where, table, "subjects", str, "any"),
        also=_field(where, table, "also", str, None),
    )
    checks = [
        (
            math.isfinite(rule.warning) and (rule.critical is None or math.isfinite(rule.critical)),
            f"warning = {rule.warning}, critical = {rule.critical}: thresholds must be finite numbers",
        ),
        (rule.kind in _KINDS, f"kind = {rule.kind!r}, expected one of {', '.join(_KINDS)}"),
        (
            rule.direction in ("above", "below"),
            f"direction = {rule.direction!r}, expected 'above' or 'below'",
        ),
        (rule.subjects in _SUBJECTS, f"subjects = {rule.subjects!r}, expected one of {', '.join(_SUBJECTS)}"),
        (rule.min_count >= 0, f"min_count = {rule.min_count}, expected >= 0"),
        (rule.for_windows >= 1, f"for = {rule.for_windows}, expected >= 1"),
        (
            rule.for_critical is None or rule.for_critical >= 1,
            f"for_critical = {rule.for_critical}, expected >= 1",
        ),
        (rule.clear_for >= 1, f"clear_for = {rule.clear_for}, expected >= 1"),
        (rule.cooldown_s >= 0, f"cooldown_s = {rule.cooldown_s}, expected >= 0"),
        (
            rule.critical is None
            or (
                rule.critical >= rule.warning if rule.direction == "above" else rule.critical <= rule.warning
            ),
            f"critical = {rule.critical} is milder than warning = {rule.warning} ({rule.direction})",
        ),
        (
            rule.also is None or rule.also.endswith(".*") == rule.metric.endswith(".*"),
            "also and metric must both end in '.*' or neither",
        ),
    ]
    for ok, problem in checks:
        if not ok:
            raise ConfigError(f"{where}: {problem}")
    try:
        rule.message.format(
            item="x",
            subject="x",
            value=1.0,
            op=">",
            threshold=1.0,
            windows=1,
            severity="x",
            count=1,
            also=1.0,
        )
    except Exception as exc:  # any formatting failure means a broken template
        raise ConfigError(f"{where}: message {rule.message!r} cannot be formatted: {exc!r}") from None
    unknown = set(table) - {
        "name", "kind", "metric", "direction", "warning", "critical", "message", "min_count",
        "for", "for_critical", "clear_for", "cooldown_s", "subjects", "also",
    }  # fmt: skip
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    return rule


def _webhook(hook: Any) -> Webhook:
    if not isinstance(hook, dict):
        raise ConfigError(f"webhook = {hook!r}: expected a [webhook] table with a url")
    webhook = Webhook(
        url=_field("webhook", hook, "url", str),
        timeout_s=float(_field("webhook", hook, "timeout_s", (int, float), 2.0)),
        retries=_field("webhook", hook, "retries", int, 3),
    )
    if not webhook.url.startswith(("http://", "https://")):
        raise ConfigError(f"webhook: url = {webhook.url!r}, expected an http:// or https:// URL")
    if not (math.isfinite(webhook.timeout_s) and webhook.timeout_s > 0) or webhook.retries < 0:
        raise ConfigError(
            f"webhook: timeout_s = {webhook.timeout_s}, retries = {webhook.retries}; "
            "expected timeout_s > 0 and retries >= 0"
        )
    unknown = set(hook) - {"url", "timeout_s", "retries"}
    if unknown:
        raise ConfigError(f"webhook: unknown field(s) {', '.join(sorted(unknown))}")
    return webhook


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Rules from a TOML file (the shipped defaults when *path* is None).

    Raises
    ------
    ConfigError
        The file is missing or not TOML, or a rule is invalid; the message names
        the file, the rule and the field with its value.
    """
    source = Path(path) if path is not None else DEFAULT_RULES
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"rules file {source}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"rules file {source}: not valid TOML: {exc}") from exc
    try:
        tables = data.get("rules", [])
        if not isinstance(tables, list) or not tables:
            raise ConfigError("expected at least one [[rules]] table")
        bad = [i + 1 for i, t in enumerate(tables) if not isinstance(t, dict)]
        if bad:
            raise ConfigError(f"rules entries {bad} are not tables: write each rule as a [[rules]] table")
        rules = tuple(_rule(i, t) for i, t in enumerate(tables))
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"rule names must be unique, got {sorted(n for n in set(names) if names.count(n) > 1)}"
            )
        webhook = None
        unknown = set(data) - {"rules", "webhook"}
        if unknown:
            raise ConfigError(
                f"unknown table(s) {', '.join(sorted(unknown))}: expected [[rules]] and [webhook]"
            )
        if "webhook" in data:
            webhook = _webhook(data["webhook"])
    except ConfigError as exc:
        raise ConfigError(f"rules file {source}: {exc}") from None
    return RuleSet(rules, webhook, str(source))
