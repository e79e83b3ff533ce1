"""``rigwatch report``: one self-contained HTML page of what the monitoring saw.

Per model version (and, on request, per rig): drift over time per feature and the
drift score, the predicted-class mix, realised and estimated accuracy, latency
percentiles, each with the alerts drawn on its time axis; then input histograms,
reference against recent readings, and the table of alert transitions. Charts are
inline SVG drawn here, so the page needs no network, script, stylesheet or font.

:func:`build_report` is pure (decoded records in, HTML out); :func:`write_report`
reads the topics to their current end and writes the file.
"""

from __future__ import annotations

import html
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from rigwatch.config import Settings
from rigwatch.data.columns import FEATURES
from rigwatch.exceptions import DecodeError, ModelError, StackError
from rigwatch.kafka import FETCH_WAIT_MS
from rigwatch.model.reference import assign_bins

__all__ = ["build_report", "write_report"]

#: Features of a subject that get their own drift line: the largest ``psi_ratio`` maxima.
TOP_FEATURES = 6
#: Smallest ratio a log axis shows; a window at 0 (no drift at all) is drawn there.
RATIO_FLOOR = 0.01

_SEVERITY_COLOURS = {"warning": "#f08c00", "critical": "#d62728", "ok": "#2ca02c"}
# Line colours avoid orange, red and green: those mean alerts on every chart.
_PALETTE = ("#1f77b4", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22", "#393b79")
_CLASS_COLOURS = ("#9ecae1", "#4292c6", "#08519c")
_REFERENCE_COLOUR, _RECENT_COLOUR = "#b0b0b0", "#1f77b4"

_UNITS = {
    **{f"ps{c}_bar": "bar" for c in "abcdef"},
    **{f"fs{c}_vol_flow": "l/min" for c in "ab"},
    **{f"ts{c}_temp": "degC" for c in "abcd"},
    "pump_eff": "W",
    "vs_vib": "mm/s",
    "cool_eff_pct": "%",
    "cool_pwr_pct": "kW",
    "eff_fact_pct": "%",
}

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

# Chart geometry (px): plot area inside the margins.
_WIDTH, _HEIGHT = 760, 240
_HIST_WIDTH = 460
_LEFT, _RIGHT, _TOP, _BOTTOM = 62, 14, 14, 40
_TIME_STEPS_S: tuple[int, ...] = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800)
_TIME_STEPS_S += (21600, 43200, 86400, 172800, 604800)

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
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else "–"


def _utc(ms: float, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return time.strftime(fmt, time.gmtime(ms / 1000))


def _is_rig(subject: str) -> bool:
    return subject.startswith("rig:")


def _alert_subject(alert: Mapping[str, Any]) -> str:
    """The subject in ``<rule>/<subject>[/<item>]``."""
    rest = str(alert["alert_id"]).removeprefix(f"{alert['rule']}/")
    return rest.split("/", 1)[0]


def _chart_of(metric: str) -> tuple[str, ...]:
    """The charts an alert on *metric* is drawn on."""
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


# --- series and scales ---------------------------------------------------------------------------

Point = tuple[int, float | None]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _series(windows: Sequence[Mapping[str, Any]], metric: str, scale: float = 1.0) -> list[Point]:
    """``(window_end, value)`` per window; None where the window lacks the metric (a gap)."""
    out: list[Point] = []
    for w in windows:
        value = w["metrics"].get(metric)
        out.append((int(w["window_end"]), float(value) * scale if _finite(value) else None))
    return out


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude * 1.0000001)


def _linear_ticks(lo: float, hi: float) -> list[float]:
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = _nice_step(hi - lo)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    last = max(last, first + 1)
    steps = (1, 2, 5) if last - first <= 2 else (1,)
    ticks = [m * 10.0**k for k in range(first, last) for m in steps] + [10.0**last]
    return [round(t, 12) for t in ticks]


@dataclass(frozen=True)
class _Frame:
    """Maps window time (epoch ms) and values to pixels of one chart."""

    t0: float
    t1: float
    ticks: Sequence[float]  # y ticks; the first and last are the axis' ends
    log: bool = False
    width: int = _WIDTH

    def x(self, t: float) -> float:
        return _LEFT + (t - self.t0) / (self.t1 - self.t0) * (self.width - _LEFT - _RIGHT)

    def y(self, value: float) -> float:
        lo, hi, v = self.ticks[0], self.ticks[-1], value
        if self.log:
            lo, hi, v = math.log10(lo), math.log10(hi), math.log10(max(value, self.ticks[0]))
        v = min(max(v, lo), hi)
        return _HEIGHT - _BOTTOM - (v - lo) / (hi - lo) * (_HEIGHT - _TOP - _BOTTOM)


def _time_range(points: Iterable[Point], windows: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    times = [float(t) for t, _ in points]
    t0, t1 = min(times), max(times)
    if t1 == t0:  # one window: half a window either side
        half = max((int(windows[0]["window_end"]) - int(windows[0]["window_start"])) / 2, 1000)
        t0, t1 = t0 - half, t1 + half
    return t0, t1


def _time_axis(frame: _Frame) -> str:
    span_s = (frame.t1 - frame.t0) / 1000
    step = next((s for s in _TIME_STEPS_S if span_s / s <= 7), _TIME_STEPS_S[-1]) * 1000
    if step >= 86_400_000:
        fmt = "%m-%d"
    elif span_s > 86_400:
        fmt = "%m-%d %H:%M"
    else:
        fmt = "%H:%M" if step >= 60_000 else "%H:%M:%S"
    out = []
    bottom = _HEIGHT - _BOTTOM
    t = math.ceil(frame.t0 / step) * step
    while t <= frame.t1:
        x = frame.x(t)
        out.append(f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{bottom}" stroke="#eee"/>')
        anchor = "end" if x > _WIDTH - _RIGHT - 25 else "middle"  # keep the last label inside
        out.append(f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="{anchor}">{_utc(t, fmt)}</text>')
        t += step
    days = sorted({_utc(frame.t0, "%Y-%m-%d"), _utc(frame.t1, "%Y-%m-%d")})
    caption = f"window end, UTC ({' – '.join(days)})"
    out.append(
        f'<text x="{_WIDTH - _RIGHT}" y="{_HEIGHT - 6}" text-anchor="end" fill="#666">{caption}</text>'
    )
    return "".join(out)


def _value_axis(frame: _Frame, unit: str) -> str:
    out = []
    for tick in frame.ticks:
        y = frame.y(tick)
        out.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{frame.width - _RIGHT}" y2="{y:.1f}" stroke="#eee"/>'
        )
        out.append(f'<text x="{_LEFT - 5}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
    mid = (_TOP + _HEIGHT - _BOTTOM) / 2
    out.append(
        f'<text transform="translate(13 {mid:.0f}) rotate(-90)" text-anchor="middle" fill="#666">'
        f"{_esc(unit)}</text>"
    )
    return "".join(out)


def _svg(label: str, body: str, width: int = _WIDTH) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {_HEIGHT}" width="{width}" '
        f'height="{_HEIGHT}" role="img" aria-label="{_esc(label)}" font-family="sans-serif" '
        f'font-size="11">{body}</svg>'
    )


# --- alerts on the time axis ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Band:
    """One alert's firing period at one severity (end None: still firing at the end of the topic)."""

    alert_id: str
    severity: str
    start: int
    end: int | None


def _bands(alerts: Sequence[Mapping[str, Any]]) -> list[_Band]:
    """Firing periods from transitions: a band starts at the incident's first breaching window."""
    by_id: dict[str, list[Mapping[str, Any]]] = {}
    for a in alerts:
        by_id.setdefault(a["alert_id"], []).append(a)
    out = []
    for alert_id, records in by_id.items():
        open_: tuple[str, int] | None = None
        for a in sorted(records, key=lambda r: r["window_end"]):
            end = int(a["window_end"])
            if open_ is not None:
                out.append(_Band(alert_id, open_[0], open_[1], end))
            firing = a["state"] == "firing"
            open_ = (a["severity"], int(a["first_seen"]) if open_ is None else end) if firing else None
        if open_ is not None:
            out.append(_Band(alert_id, open_[0], open_[1], None))
    return out


def _alert_layer(frame: _Frame, alerts: Sequence[Mapping[str, Any]]) -> str:
    """Translucent bands over firing periods and a triangle per transition, with hover text."""
    out = []
    top, bottom = _TOP, _HEIGHT - _BOTTOM
    for band in _bands(alerts):
        start, end = max(band.start, frame.t0), min(band.end if band.end is not None else frame.t1, frame.t1)
        if end < start:
            continue
        x0, x1 = frame.x(start), frame.x(end)
        colour = _SEVERITY_COLOURS.get(band.severity, "#999")
        out.append(
            f'<rect x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 2):.1f}" height="{bottom - top}" '
            f'fill="{colour}" fill-opacity="0.13"><title>{_esc(band.alert_id)}: {_esc(band.severity)}'
            "</title></rect>"
        )
    for a in alerts:
        t = int(a["window_end"])
        if not frame.t0 <= t <= frame.t1:
            continue
        x = frame.x(t)
        colour = _SEVERITY_COLOURS.get("ok" if a["state"] == "resolved" else a["severity"], "#999")
        tip = f"{_utc(t)} {a['alert_id']} {a['state']} {a['severity']}: {a['message']}"
        out.append(
            f'<path class="alert-marker" d="M{x:.1f},{bottom - 1}l-5,9h10z" fill="{colour}">'
            f"<title>{_esc(tip)}</title></path>"
        )
    return "".join(out)


# --- charts ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    name: str
    colour: str
    points: Sequence[Point]
    dash: bool = False


def _path(frame: _Frame, points: Sequence[Point]) -> tuple[str, list[tuple[float, float]]]:
    """An SVG path that breaks at gaps, and the points no segment reaches (drawn as dots)."""
    parts, lonely = [], []
    for i, (t, v) in enumerate(points):
        if v is None:
            continue
        xy = (frame.x(t), frame.y(v))
        joined = i > 0 and points[i - 1][1] is not None
        parts.append(f"{'L' if joined else 'M'}{xy[0]:.1f},{xy[1]:.1f}")
        if not joined and (i + 1 == len(points) or points[i + 1][1] is None):
            lonely.append(xy)
    return "".join(parts), lonely


def _legend(items: Iterable[tuple[str, str, str]]) -> str:
    """Items are (name, colour, style: line / dash / box)."""
    cells = "".join(
        f'<li><span class="sw {style}" style="border-color:{c};background:{c if style == "box" else "none"}">'
        f"</span>{_esc(name)}</li>"
        for name, c, style in items
    )
    return f'<ul class="legend">{cells}</ul>'


def _figure(title: str, caption: str, body: str, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f"<figure{cls}><h3>{_esc(title)}</h3>{body}<figcaption>{_esc(caption)}</figcaption></figure>"


def _no_data(why: str) -> str:
    return f'<p class="nodata">no data: {_esc(why)}</p>'


def _alert_note(alerts: Sequence[Mapping[str, Any]]) -> str:
    if not alerts:
        return ""
    ids = len({a["alert_id"] for a in alerts})
    return (
        f'<p class="muted">{len(alerts)} alert transition(s) of {ids} alert(s) on this chart: bands while '
        "firing, ▲ at each transition (orange warning, red critical, green resolved); hover for the message."
        "</p>"
    )


def _line_chart(
    title: str,
    caption: str,
    lines: Sequence[_Line],
    windows: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]],
    *,
    unit: str,
    guides: Sequence[tuple[float, str]] = (),
    log: bool = False,
    y_min: float | None = None,
    y_max: float | None = None,
    empty: str = "no window has this metric",
) -> str:
    values = [v for line in lines for _, v in line.points if v is not None]
    if not values:
        return _figure(title, caption, _no_data(empty))
    span = [*values, *(g for g, _ in guides)]
    if log:
        ticks = _log_ticks(max(min(span), RATIO_FLOOR), max(max(span), RATIO_FLOOR))
    else:
        lo = min(span) if y_min is None else min(y_min, *values)
        ticks = _linear_ticks(lo, max(span) if y_max is None else max(y_max, *values))
    t0, t1 = _time_range([p for line in lines for p in line.points], windows)
    frame = _Frame(t0, t1, ticks, log)
    body = [_value_axis(frame, unit), _time_axis(frame), _alert_layer(frame, alerts)]
    for value, label in guides:
        y = frame.y(value)
        body.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_WIDTH - _RIGHT}" y2="{y:.1f}" stroke="#444" '
            f'stroke-dasharray="2 3"/><text x="{_WIDTH - _RIGHT - 3}" y="{y - 3:.1f}" text-anchor="end" '
            f'fill="#444">{_esc(label)}</text>'
        )
    for line in lines:
        d, lonely = _path(frame, line.points)
        dash = ' stroke-dasharray="6 4"' if line.dash else ""
        if d:
            body.append(
                f'<path class="series" d="{d}" fill="none" stroke="{line.colour}" stroke-width="1.8"{dash}>'
                f"<title>{_esc(line.name)}</title></path>"
            )
        body.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{line.colour}"/>' for x, y in lonely)
    legend = _legend((line.name, line.colour, "dash" if line.dash else "") for line in lines)
    return _figure(title, caption, _svg(title, "".join(body)) + legend + _alert_note(alerts))


def _stacked_chart(
    title: str,
    caption: str,
    layers: Sequence[tuple[str, str, str, float | None]],  # (name, colour, metric, reference share)
    windows: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]],
) -> str:
    """Shares (in %) stacked bottom to top; the reference shares as dashed boundaries."""
    rows = [w for w in windows if all(_finite(w["metrics"].get(m)) for _, _, m, _ in layers)]
    if not layers or not rows:
        return _figure(title, caption, _no_data("no drift window with predictions"))
    ends = [int(w["window_end"]) for w in rows]
    frame = _Frame(*_time_range([(t, 0.0) for t in ends], rows), ticks=[0, 20, 40, 60, 80, 100])
    xs = [frame.x(t) for t in ends]
    if len(rows) == 1:  # one window: a block across the frame
        xs, rows = [frame.x(frame.t0), frame.x(frame.t1)], [rows[0], rows[0]]
    body = [_value_axis(frame, "% of predictions"), _time_axis(frame)]
    below = [0.0] * len(rows)
    for name, colour, metric, _ in layers:
        above = [b + 100 * w["metrics"][metric] for b, w in zip(below, rows, strict=True)]
        edge = [*zip(xs, above, strict=True), *reversed(list(zip(xs, below, strict=True)))]
        d = "M" + "L".join(f"{x:.1f},{frame.y(v):.1f}" for x, v in edge) + "Z"
        body.append(f'<path class="series" d="{d}" fill="{colour}"><title>{_esc(name)}</title></path>')
        below = above
    shares = [share for *_, share in layers]
    if all(share is not None for share in shares):
        for boundary in np.cumsum([s or 0.0 for s in shares[:-1]]):
            y = frame.y(100 * float(boundary))
            body.append(
                f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_WIDTH - _RIGHT}" y2="{y:.1f}" stroke="#000" '
                'stroke-dasharray="5 4" stroke-opacity="0.6"/>'
            )
    body.append(_alert_layer(frame, alerts))
    legend = [(name, colour, "box") for name, colour, _, _ in layers]
    if all(share is not None for share in shares):
        legend.append(("held-out mix (boundaries)", "#000", "dash"))
    return _figure(title, caption, _svg(title, "".join(body)) + _legend(legend) + _alert_note(alerts))


def _binned(profile: Mapping[str, Any], values: np.ndarray | None) -> tuple[np.ndarray, float] | None:
    """Counts of the finite *values* in the profile's bins and their PSI against the training counts."""
    # rigwatch.drift pulls in river and scipy (~1 s): only a report with readings pays for it.
    from rigwatch.drift.stats import psi

    finite = values[np.isfinite(values)] if values is not None else np.empty(0)
    if not finite.size:
        return None
    counts = np.bincount(assign_bins(finite, profile["inner_edges"]), minlength=len(profile["fractions"]))
    return counts, float(psi(np.asarray(profile["counts"]), counts))


def _histogram_chart(feature: str, profile: Mapping[str, Any], values: np.ndarray | None) -> str:
    """Bar pairs per training-decile bin: reference share beside recent share (None: reference only)."""
    unit = _UNITS.get(feature, "")
    title = f"{feature} ({unit})" if unit else feature
    edges = np.asarray(profile["inner_edges"], dtype=np.float64)
    ref = np.asarray(profile["fractions"], dtype=np.float64)
    binned = _binned(profile, values)
    recent = None
    caption = (
        f"Share of readings (%) per bin of {feature}; the bins are the training deciles, their edges in"
        f" {unit or 'the sensor unit'} under the axis: training rows (grey) beside recent readings (blue)."
    )
    if binned is not None and values is not None:
        counts, drift = binned
        recent = counts / counts.sum()
        finite = values[np.isfinite(values)]
        outside = float(np.mean((finite < profile["min"]) | (finite > profile["max"])))
        caption += (
            f" Recent: {finite.size} readings ({values.size - finite.size} missing), {100 * outside:.1f} %"
            f" outside the training range, mean {finite.mean():.4g} against {profile['mean']:.4g};"
            f" PSI {drift:.3g}."
        )
    top = max(float(ref.max()), float(recent.max()) if recent is not None else 0.0) * 100
    frame = _Frame(0, 1, _linear_ticks(0, top), width=_HIST_WIDTH)
    group = (_HIST_WIDTH - _LEFT - _RIGHT) / len(ref)
    body = [_value_axis(frame, "% of readings")]
    bottom = frame.y(0)
    for i in range(len(ref)):
        x = _LEFT + i * group
        for k, (share, colour) in enumerate(((ref, _REFERENCE_COLOUR), (recent, _RECENT_COLOUR))):
            if share is None:
                continue
            y = frame.y(100 * share[i])
            body.append(
                f'<rect class="bar" x="{x + group * (0.1 + 0.4 * k):.1f}" y="{y:.1f}" '
                f'width="{group * 0.4:.1f}" height="{bottom - y:.1f}" fill="{colour}">'
                f"<title>{100 * share[i]:.1f} %</title></rect>"
            )
    # The bin edges (training deciles) under the boundaries; the outer bins are open-ended.
    for i, edge in enumerate(edges.tolist(), start=1):
        x = _LEFT + i * group
        body.append(
            f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#666"/>'
            f'<text transform="translate({x + 3:.1f} {bottom + 12}) rotate(-30)" text-anchor="end" '
            f'font-size="9">{edge:.4g}</text>'
        )
    chart = _svg(f"{feature} reference vs recent", "".join(body), width=_HIST_WIDTH)
    if recent is None and values is not None:
        chart += _no_data("no recent reading with a value for this sensor")
    return _figure(title, caption, chart, css="small")


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
    if not _is_rig(subject):
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
    name = f"Rig {subject.removeprefix('rig:')}" if _is_rig(subject) else f"Model version {subject}"
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
        Decoded MetricWindow records (any order; kinds drift, health, accuracy).
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
        (w for w in windows if rigs or not _is_rig(str(w["subject"]))),
        key=lambda w: (int(w["window_end"]), str(w["kind"])),
    )
    ordered = sorted(alerts, key=lambda a: (int(a["window_end"]), str(a["alert_id"])))
    shown_alerts = [a for a in ordered if rigs or not _is_rig(_alert_subject(a))]
    first_seen: dict[str, int] = {}
    for w in shown:
        first_seen.setdefault(w["subject"], int(w["window_end"]))
    subjects = sorted(first_seen, key=lambda s: (_is_rig(s), first_seen[s] if not _is_rig(s) else 0, s))
    sections = [
        _subject_section(
            f"subject-{i}",
            subject,
            [w for w in shown if w["subject"] == subject],
            [a for a in shown_alerts if _alert_subject(a) == subject],
            reference,
        )
        for i, subject in enumerate(subjects)
    ]
    if not sections:
        sections = [f'<section id="subject-0"><h2>Windows</h2>{_no_data("no metric windows")}</section>']
    by_kind = {k: sum(w["kind"] == k for w in shown) for k in ("drift", "accuracy", "health")}
    summary = (
        f"{len(shown)} metric windows ({', '.join(f'{n} {k}' for k, n in by_kind.items())}) of"
        f" {len(subjects)} subject(s); {len(shown_alerts)} alert record(s)."
    )
    if shown:
        summary += f" Windows end from {_utc(shown[0]['window_end'])} to {_utc(shown[-1]['window_end'])} UTC."
    nav = (
        "".join(f'<a href="#subject-{i}">{_esc(s)}</a>' for i, s in enumerate(subjects))
        + '<a href="#inputs">inputs</a><a href="#alerts">alerts</a>'
    )
    how = (
        "Every chart's time axis is its windows' end time in UTC: event time for drift, label time for"
        " accuracy, the scorer's clock for health, so they need not line up. Alerts are drawn on the chart"
        " of the metric they watch: a translucent band while firing (from the first breaching window),"
        " a triangle at each transition; orange warning, red critical, green resolved."
    )
    body = (
        f"<h1>{_esc(title)}</h1>"
        + "".join(f'<p class="muted">{_esc(n)}</p>' for n in notes)
        + f"<p>{_esc(summary)}</p><p>{_esc(how)}</p><nav>{nav}</nav>"
        + "".join(sections)
        + _histograms(reference, recent)
        + _alert_table(shown_alerts, hidden=len(ordered) - len(shown_alerts))
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>\n"
    )


# --- reading the topics ------------------------------------------------------------------------------

#: Records taken from the reader's queue per ``consume`` call.
_BATCH = 10_000


def _read_to_end(
    bootstrap: str, topic: str, *, last: int | None = None, timeout: float = 60.0
) -> list[Message]:
    """The records of *topic* up to its end as of now: all of them, or the *last* of each partition.

    A partition's end is the high watermark of its first fetch response. The local broker
    answers ListOffsets wrongly and pauses up to ~0.9 s between fetches of a backlog
    (``rigwatch.lag``), so neither end offsets nor a quiet spell tell where a topic ends.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"rigwatch-report-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "allow.auto.create.topics": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": FETCH_WAIT_MS,
        }
    )
    deadline = time.monotonic() + timeout
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None:
            raise StackError(f"cannot read topic {topic!r} at {bootstrap}: {metadata.error.str()}")
        partitions = sorted(metadata.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records: list[Message] = []
        start: dict[int, int] = dict.fromkeys(partitions, 0)  # first offset wanted
        reached: dict[int, int] = {}  # partition -> next offset, once it answered
        ends: dict[int, int] | None = None
        while ends is None or any(reached[p] < ends[p] for p in partitions):
            if time.monotonic() > deadline:
                behind = [p for p in partitions if ends is None or reached.get(p, -1) < ends[p]]
                raise StackError(
                    f"topic {topic!r}: partitions {behind} not read to their end in {timeout:.0f} s"
                )
            for msg in consumer.consume(_BATCH, 0.1):
                p, offset, err = msg.partition(), msg.offset(), msg.error()
                assert p is not None and offset is not None  # set on records and EOF events
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        reached[p] = max(reached.get(p, 0), offset)
                    elif err.fatal() or not err.retriable():
                        raise KafkaException(err)
                    continue
                if offset < max(start[p], reached.get(p, 0)) or (ends is not None and offset >= ends[p]):
                    continue  # a stale prefetch, or produced after we started
                records.append(msg)
                reached[p] = offset + 1
            if ends is None and all(p in reached for p in partitions):
                ends = {p: max(_fetched_high(consumer, topic, p), reached[p]) for p in partitions}
                if last is not None:
                    start = {p: max(0, ends[p] - last) for p in partitions}
                    records = [m for m in records if _position(m) >= start[m.partition() or 0]]
                    if any(reached[p] < start[p] for p in partitions):
                        reached = {p: max(reached[p], start[p]) for p in partitions}
                        consumer.assign([TopicPartition(topic, p, reached[p]) for p in partitions])
        return records
    except KafkaException as exc:
        raise StackError(f"reading topic {topic!r} at {bootstrap}: {exc}") from exc
    finally:
        consumer.close()


def _position(msg: Message) -> int:
    offset = msg.offset()
    return -1 if offset is None else offset


def _fetched_high(consumer: Consumer, topic: str, partition: int) -> int:
    """The high watermark of the partition's last fetch response (right on the local broker too)."""
    return max(consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)[1], 0)


def _decode_all(
    decode: Callable[[bytes | None], dict[str, Any]], messages: Iterable[Message]
) -> tuple[list[dict[str, Any]], int]:
    out, bad = [], 0
    for msg in messages:
        try:
            out.append(decode(msg.value()))
        except DecodeError:
            bad += 1  # not ours to judge here: counted and left out
    return out, bad


def write_report(
    settings: Settings,
    out: Path,
    *,
    max_readings: int = 5000,
    rigs: bool = False,
    progress: Callable[[str], None] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Read the metrics, alerts and newest readings to their current end and write the HTML page.

    Parameters
    ----------
    settings
        Broker (or the local stack), topic prefix and model package.
    out
        The HTML file (parent folders are created).
    max_readings
        The newest readings for the input histograms; 0 reads none.
    rigs
        Also chart the rig segments.
    progress
        Called with a line of progress for people.
    timeout
        Seconds each topic may take to be read to its end.

    Returns
    -------
    Path
        *out*.

    Raises
    ------
    StackError
        No broker is configured or running, a topic is missing, or it was not read in time.

    Examples
    --------
    ::

        write_report(Settings(), Path("report.html"), progress=print)
    """
    from rigwatch.model import ModelPackage
    from rigwatch.schemas import Codecs
    from rigwatch.stack import endpoints

    say = progress or (lambda _: None)
    topics, codecs = settings.topics, Codecs.load()
    bootstrap = settings.bootstrap or endpoints(settings).bootstrap  # Kafka only: no Redis needed
    windows, bad = _decode_all(
        codecs.metric_window.decode, _read_to_end(bootstrap, topics.metrics, timeout=timeout)
    )
    say(
        f"{topics.metrics}: {len(windows)} metric windows" + (f" ({bad} undecodable, skipped)" if bad else "")
    )
    alerts, bad = _decode_all(codecs.alert.decode, _read_to_end(bootstrap, topics.alerts, timeout=timeout))
    say(f"{topics.alerts}: {len(alerts)} alert records" + (f" ({bad} undecodable, skipped)" if bad else ""))
    reference, version = None, "none"
    try:
        package = ModelPackage.load(settings.model_dir)
        reference, version = package.reference, package.version
    except ModelError as exc:
        say(f"no reference profile, input histograms left out: {exc}")
    recent = None
    if max_readings > 0:
        tail = _read_to_end(bootstrap, topics.sensor_readings, last=max_readings, timeout=timeout)
        tail.sort(key=lambda m: m.timestamp()[1])
        readings, bad = _decode_all(codecs.sensor_reading.decode, tail[-max_readings:])
        features = list(reference["features"]) if reference else list(FEATURES)
        recent = {f: np.array([r.get(f) for r in readings], dtype=np.float64) for f in features}
        say(
            f"{topics.sensor_readings}: the newest {len(readings)} readings"
            + (f" ({bad} undecodable)" if bad else "")
        )
    notes = [
        f"Generated {_utc(time.time() * 1000)} UTC from {bootstrap}: {topics.metrics}, {topics.alerts} read"
        f" from the beginning to their end; the newest readings of {topics.sensor_readings}.",
        f"Reference profile: model {version} ({settings.model_dir}).",
    ]
    page = build_report(
        windows, alerts, reference, recent, "rigwatch monitoring report", rigs=rigs, notes=notes
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    say(f"wrote {out} ({len(page.encode()) / 1024:.0f} KiB)")
    return out
