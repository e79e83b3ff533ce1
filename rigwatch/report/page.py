"""The page of ``rigwatch report``: the sections per subject, inputs and alerts, and :func:`build_report`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rigwatch.report.charts import (
    _PALETTE,
    _RECENT_COLOUR,
    _REFERENCE_COLOUR,
    _SEVERITY_COLOURS,
    RATIO_FLOOR,
    _binned,
    _esc,
    _histogram_chart,
    _legend,
    _Line,
    _line_chart,
    _no_data,
    _num,
    _series,
    _stacked_chart,
    _utc,
)
from rigwatch.report.comparison import comparison_section, is_comparison_metric
from rigwatch.windowing import is_segment, rig_of

__all__ = ["TOP_FEATURES", "build_report"]

#: Features of a subject that get their own drift line: the largest ``psi_ratio`` maxima.
TOP_FEATURES = 6

_CLASS_COLOURS = ("#9ecae1", "#4292c6", "#08519c")

# Which chart an alert is drawn on, by the metric it watches; every alert is in the table.
_HEALTH_METRICS = (
    "latency_ms",
    "processing_ms",
    "staleness_s",
    "data_error",
    "system_error",
    "dlq.",
    "scorer_lag",
    "flag_rate",
    "flagged_rate",
    "clock_skew",
    "rate_per_s",
    "no_data",
)
_ACCURACY_METRICS = (
    "accuracy",
    "estimated_accuracy",
    "log_loss",
    "macro_f1",
    "mcc",
    "recall.",
    "precision.",
    "coverage",
    "labelled",
    "label_latency_s",
    "unlabelled_expired",
)

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;color:#222;max-width:1600px;margin:1.5em auto;padding:0 1em}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin:.2em 0}
.grid{display:flex;flex-wrap:wrap;gap:1.2em}
figure{margin:0 0 1.2em;max-width:780px;flex:1 1 560px}
figure.small{max-width:480px;flex:1 1 400px}
figcaption{color:#444;font-size:.92em}
svg{max-width:100%;height:auto;background:#fff;border:1px solid #e4e4e4}
.nodata{color:#777;font-style:italic;border:1px dashed #ccc;padding:1em;margin:.4em 0}
.legend{list-style:none;padding:0;margin:.3em 0;display:flex;flex-wrap:wrap;gap:.4em 1.2em;font-size:.9em}
.sw{display:inline-block;width:22px;height:0;border-top:3px solid;vertical-align:middle;margin-right:.35em}
.sw.dash{border-top-style:dashed}.sw.box{height:10px;border:0;width:14px}
table{border-collapse:collapse;font-size:.88em;width:100%}
th,td{border-bottom:1px solid #e4e4e4;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.sev{font-weight:600}.muted{color:#666}
nav a{margin-right:1em}
.pair{margin:1em 0 1.5em}table.figures{width:auto;margin:.4em 0}
"""


def _alert_subject(alert: Mapping[str, Any]) -> str:
    """The subject in ``<rule>/<subject>[/<item>]``."""
    rest = str(alert["alert_id"]).removeprefix(f"{alert['rule']}/")
    return rest.split("/", 1)[0]


def _chart_of(metric: str) -> tuple[str, ...]:
    """The charts an alert on *metric* is drawn on."""
    if is_comparison_metric(metric):
        return ("comparison",)
    if metric == "drift_score":
        return ("score",)
    if metric == "prediction_drift" or metric.startswith(
        ("prediction.", "change.class", "change.confidence")
    ):
        return ("score", "mix")
    if metric.startswith(_HEALTH_METRICS):
        return ("latency",)
    if metric.startswith(_ACCURACY_METRICS):
        return ("accuracy",)
    return ("features",)


# --- sections --------------------------------------------------------------------------------------


def _top_features(windows: Sequence[Mapping[str, Any]]) -> list[tuple[str, float]]:
    peaks: dict[str, float] = {}
    for w in windows:
        for name, value in w["metrics"].items():
            if name.startswith("psi_ratio.") and math.isfinite(value):
                feature = name.removeprefix("psi_ratio.")
                peaks[feature] = max(peaks.get(feature, -math.inf), value)
    return sorted(peaks.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_FEATURES]


def _subject_section(
    anchor: str,
    subject: str,
    windows: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]],
    reference: Mapping[str, Any] | None,
) -> str:
    kinds = {k: [w for w in windows if w["kind"] == k] for k in ("drift", "accuracy", "health")}

    def on(chart: str) -> list[Mapping[str, Any]]:
        return [a for a in alerts if chart in _chart_of(str(a["metric"]))]

    drift = kinds["drift"]
    top = _top_features(drift)
    feature_lines = [
        _Line(f"{f} (max {peak:.3g}×)", _PALETTE[i % len(_PALETTE)], _series(drift, f"psi_ratio.{f}"))
        for i, (f, peak) in enumerate(top)
    ]
    charts = [
        _line_chart(
            "Drift per feature: PSI ÷ noise level",
            f"psi_ratio of the {len(top)} features with the largest maxima, per drift window (event time),"
            " log scale, no unit: the window's population stability index against the training deciles"
            " divided by what pure noise reaches at the window's count; above 1 the feature drifted."
            f" Values below {RATIO_FLOOR} are drawn at {RATIO_FLOOR}.",
            feature_lines,
            drift,
            on("features"),
            unit="PSI ÷ noise (ratio)",
            guides=[(1.0, "1 = noise level")],
            log=True,
            empty="no drift window with a verdict (fewer readings than the minimum count?)",
        ),
        _line_chart(
            "Drift score and prediction drift",
            "drift_score: the features' PSI ratios weighted by the model's feature importance (drift that"
            " matters to this model; default alert ≥ 1 warning, ≥ 2 critical). prediction_drift: the larger"
            " of the class-mix and confidence PSI ratios against the model's held-out predictions (> 1:"
            " drift). Both are ratios to noise, no unit, log scale.",
            [
                _Line("drift_score", _PALETTE[0], _series(drift, "drift_score")),
                _Line("prediction_drift", _PALETTE[1], _series(drift, "prediction_drift"), dash=True),
            ],
            drift,
            on("score"),
            unit="ratio to noise",
            guides=[(1.0, "1"), (2.0, "2")],
            log=True,
            empty="no drift window with a verdict",
        ),
    ]
    classes = _classes(drift, reference)
    held_out = (reference or {}).get("test_predictions", {}).get("predicted_class", {}).get("fractions", {})
    charts.append(
        _stacked_chart(
            "Predicted-class mix",
            "Share of the window's predictions per predicted cooler condition (3 %: close to total failure,"
            " 20 %: reduced efficiency, 100 %: full efficiency), stacked, in % of predictions, per drift"
            " window (event time). Dashed: the boundaries of the model's mix on held-out rows.",
            [
                (
                    f"{c} % cooler",
                    _CLASS_COLOURS[i % len(_CLASS_COLOURS)],
                    f"prediction.share.{c}",
                    held_out.get(c),
                )
                for i, c in enumerate(classes)
            ],
            drift,
            on("mix"),
        )
    )
    acc = kinds["accuracy"]
    charts.append(
        _line_chart(
            "Accuracy: realised and estimated",
            "Per accuracy window (label time), in %: accuracy on the labels that arrived in the window"
            " (from the minimum count of labelled pairs), and the accuracy estimated from the model's own"
            " confidence for the predictions made in the window, before any label. Realised well below"
            " the estimate means the model is confidently wrong (concept drift).",
            [
                _Line("accuracy (labelled)", _PALETTE[0], _series(acc, "accuracy", 100)),
                _Line("estimated_accuracy", _PALETTE[1], _series(acc, "estimated_accuracy", 100), dash=True),
            ],
            acc,
            on("accuracy"),
            unit="% correct",
            y_max=100,
            empty="no accuracy window (is `rigwatch accuracy` running, do labels arrive?)",
        )
    )
    if not is_segment(subject):
        health = kinds["health"]
        charts.append(
            _line_chart(
                "Latency percentiles",
                "Per health window (scorer time), in milliseconds: event → prediction ready p50 / p95 /"
                " p99 (includes the producer's clock and the time in Kafka), and the scorer's own time per"
                " batch (processing p99). Empty windows (scorer idle or down) leave gaps.",
                [
                    _Line("latency p50", _PALETTE[0], _series(health, "latency_ms.p50")),
                    _Line("latency p95", _PALETTE[1], _series(health, "latency_ms.p95")),
                    _Line("latency p99", _PALETTE[2], _series(health, "latency_ms.p99")),
                    _Line("processing p99", _PALETTE[5], _series(health, "processing_ms.p99"), dash=True),
                ],
                health,
                on("latency"),
                unit="ms",
                y_min=0,
                empty="no health window with predictions (is `rigwatch latency` running?)",
            )
        )
    name = f"Rig {rig_of(subject)}" if is_segment(subject) else f"Model version {subject}"
    counts = ", ".join(f"{len(v)} {k}" for k, v in kinds.items() if v) or "none"
    summary = f"Windows: {counts}; alert transitions: {len(alerts)}."
    return (
        f'<section id="{anchor}"><h2>{_esc(name)}</h2><p>{_esc(summary)}</p>'
        f'<div class="grid">{"".join(charts)}</div></section>'
    )


def _classes(drift: Sequence[Mapping[str, Any]], reference: Mapping[str, Any] | None) -> list[str]:
    if reference and "class_priors" in reference:
        return list(reference["class_priors"])
    labels = {m.removeprefix("prediction.share.") for w in drift for m in w["metrics"]}
    labels = {label for label in labels if label.isdigit()}
    return sorted(labels, key=int)


def _histograms(reference: Mapping[str, Any] | None, recent: Mapping[str, np.ndarray] | None) -> str:
    head = "<h2>Inputs: reference vs recent</h2>"
    if not reference or not reference.get("features"):
        missing = _no_data("no reference profile (model package not found)")
        return f'<section id="inputs">{head}{missing}</section>'
    profiles: Mapping[str, Any] = reference["features"]
    recent = recent or {}

    def score(feature: str) -> float:
        binned = _binned(profiles[feature], recent.get(feature))
        return -1.0 if binned is None else binned[1]

    order = sorted(profiles, key=lambda f: (-score(f), list(profiles).index(f)))
    n = max((v.size for v in recent.values()), default=0)
    intro = (
        f"<p>The {len(order)} model inputs, most changed first (by PSI of the recent readings against the"
        f" training deciles). Reference: the model package's training rows. Recent: the newest {n} readings"
        " of the readings topic. Bins are the training deciles, so the grey bars are about 10 % each"
        " (fewer, uneven bins where a sensor sits at one value for many cycles).</p>"
    )
    if not n:
        intro += _no_data("no recent readings (readings topic empty, or --max-readings 0)")
    legend = _legend([("reference (training)", _REFERENCE_COLOUR, "box"), ("recent", _RECENT_COLOUR, "box")])
    charts = "".join(_histogram_chart(f, profiles[f], recent.get(f) if n else None) for f in order)
    return f'<section id="inputs">{head}{intro}{legend}<div class="grid">{charts}</div></section>'


def _alert_table(alerts: Sequence[Mapping[str, Any]], hidden: int) -> str:
    head = "<h2>Alerts</h2>"
    note = (
        f'<p class="muted">{hidden} rig alert record(s) not shown (--rigs shows them).</p>' if hidden else ""
    )
    if not alerts:
        return f'<section id="alerts">{head}{_no_data("no alert records")}{note}</section>'
    latest: dict[str, Mapping[str, Any]] = {}
    for a in alerts:
        latest[a["alert_id"]] = a
    firing = sorted((a for a in latest.values() if a["state"] == "firing"), key=lambda a: a["alert_id"])
    now = (
        "Firing at the end of the topic: "
        + ", ".join(f"{a['alert_id']} ({a['severity']})" for a in firing)
        + "."
        if firing
        else "Nothing is firing at the end of the topic."
    )
    rows = []
    for a in alerts:
        colour = _SEVERITY_COLOURS.get("ok" if a["state"] == "resolved" else a["severity"], "#999")
        rows.append(
            "<tr>"
            f"<td>{_esc(_utc(a['window_end']))}</td><td>{_esc(a['alert_id'])}</td><td>{_esc(a['state'])}</td>"
            f'<td class="sev" style="color:{colour}">{_esc(a["severity"])}</td><td>{_esc(a["metric"])}</td>'
            f'<td class="num">{_esc(_num(a["value"]))}</td><td class="num">{_esc(_num(a["threshold"]))}</td>'
            f"<td>{_esc(_utc(a['first_seen']))}</td><td>{_esc(a['message'])}</td>"
            "</tr>"
        )
    table = (
        "<table><thead><tr><th>window end (UTC)</th><th>alert</th><th>state</th><th>severity</th>"
        "<th>metric</th><th>value</th><th>threshold</th><th>first seen (UTC)</th><th>message</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )
    return (
        f'<section id="alerts">{head}<p>{len(alerts)} transition(s) of {len(latest)} alert(s), oldest first.'
        f" {_esc(now)}</p>{note}{table}</section>"
    )


def build_report(
    windows: list[dict[str, Any]],
    alerts: list[dict[str, Any]],
    reference: dict[str, Any] | None,
    recent: dict[str, np.ndarray] | None,
    title: str,
    *,
    rigs: bool = False,
    notes: Sequence[str] = (),
) -> str:
    """Render the monitoring history as one self-contained HTML page.

    Parameters
    ----------
    windows
        Decoded MetricWindow records (any order; kinds drift, health, accuracy, comparison).
    alerts
        Decoded Alert records (any order).
    reference
        The model package's reference profile (``ModelPackage.reference``), or None.
    recent
        Recent sensor values per feature (NaN: missing), or None.
    title
        The page's heading.
    rigs
        Also chart the rig segments (``rig:<id>`` subjects) and list their alerts;
        by default only model-version subjects are shown.
    notes
        Lines under the heading (where the data came from, when).

    Returns
    -------
    str
        The HTML document. Every text from the records is escaped; charts are inline
        SVG; an empty input gives a "no data" note, never an error.

    Examples
    --------
    >>> page = build_report([], [], None, None, "empty <stack>")
    >>> page.startswith("<!doctype html>"), "empty &lt;stack&gt;" in page, "no data" in page
    (True, True, True)
    """
    shown = sorted(
        (w for w in windows if rigs or not is_segment(str(w["subject"]))),
        key=lambda w: (int(w["window_end"]), str(w["kind"])),
    )
    ordered = sorted(alerts, key=lambda a: (int(a["window_end"]), str(a["alert_id"])))
    shown_alerts = [a for a in ordered if rigs or not is_segment(_alert_subject(a))]
    # Comparison windows (subject: the challenger) get their own section, per champion/challenger pair.
    monitored = [w for w in shown if w["kind"] != "comparison"]
    compared = [w for w in shown if w["kind"] == "comparison"]
    on_comparison: dict[str, list[dict[str, Any]]] = {}
    for a in shown_alerts:
        if is_comparison_metric(str(a["metric"])):
            on_comparison.setdefault(_alert_subject(a), []).append(a)
    first_seen: dict[str, int] = {}
    for w in monitored:
        first_seen.setdefault(w["subject"], int(w["window_end"]))
    subjects = sorted(first_seen, key=lambda s: (is_segment(s), first_seen[s] if not is_segment(s) else 0, s))
    sections = [
        _subject_section(
            f"subject-{i}",
            subject,
            [w for w in monitored if w["subject"] == subject],
            [
                a
                for a in shown_alerts
                if _alert_subject(a) == subject and not is_comparison_metric(str(a["metric"]))
            ],
            reference,
        )
        for i, subject in enumerate(subjects)
    ]
    if not sections:
        sections = [f'<section id="subject-0"><h2>Windows</h2>{_no_data("no metric windows")}</section>']
    comparison = comparison_section(compared, on_comparison)
    by_kind = {k: sum(w["kind"] == k for w in shown) for k in ("drift", "accuracy", "health")}
    if compared:
        by_kind["comparison"] = len(compared)
    summary = (
        f"{len(shown)} metric windows ({', '.join(f'{n} {k}' for k, n in by_kind.items())}) of"
        f" {len(subjects)} subject(s); {len(shown_alerts)} alert record(s)."
    )
    if shown:
        summary += f" Windows end from {_utc(shown[0]['window_end'])} to {_utc(shown[-1]['window_end'])} UTC."
    nav = (
        "".join(f'<a href="#subject-{i}">{_esc(s)}</a>' for i, s in enumerate(subjects))
        + ('<a href="#comparison">champion / challenger</a>' if comparison else "")
        + '<a href="#inputs">inputs</a><a href="#alerts">alerts</a>'
    )
    labelled = "accuracy and the labelled pairs of a comparison" if compared else "accuracy"
    how = (
        "Every chart's time axis is its windows' end time in UTC: event time for drift, label time for"
        f" {labelled}, the scorer's clock for health, so they need not line up. Alerts are drawn on the chart"
        " of the metric they watch: a translucent band while firing (from the first breaching window),"
        " a triangle at each transition; orange warning, red critical, green resolved."
    )
    body = (
        f"<h1>{_esc(title)}</h1>"
        + "".join(f'<p class="muted">{_esc(n)}</p>' for n in notes)
        + f"<p>{_esc(summary)}</p><p>{_esc(how)}</p><nav>{nav}</nav>"
        + "".join(sections)
        + comparison
        + _histograms(reference, recent)
        + _alert_table(shown_alerts, hidden=len(ordered) - len(shown_alerts))
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>\n"
    )
