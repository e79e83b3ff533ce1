"""SVG drawing primitives of ``rigwatch report``: series, scales, frames, axes, charts, alert layers.

Inline SVG drawn here, so the page needs no network, script, stylesheet or font.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rigwatch.model.reference import assign_bins

__all__ = ["RATIO_FLOOR"]

#: Smallest ratio a log axis shows; a window at 0 (no drift at all) is drawn there.
RATIO_FLOOR = 0.01

_SEVERITY_COLOURS = {"warning": "#f08c00", "critical": "#d62728", "ok": "#2ca02c"}
# Line colours avoid orange, red and green: those mean alerts on every chart.
_PALETTE = ("#1f77b4", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22", "#393b79")
_MARK_COLOUR = "#444"
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

# Chart geometry (px): plot area inside the margins.
_WIDTH, _HEIGHT = 760, 240
_HIST_WIDTH = 460
_LEFT, _RIGHT, _TOP, _BOTTOM = 62, 14, 14, 40
_TIME_STEPS_S: tuple[int, ...] = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800)
_TIME_STEPS_S += (21600, 43200, 86400, 172800, 604800)


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _utc(ms: float, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return time.strftime(fmt, time.gmtime(ms / 1000))


def _num(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else "–"


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


@dataclass(frozen=True)
class _Mark:
    """A moment on a chart's time axis (epoch ms): a dotted vertical, *label* at its top, *tip* on hover."""

    time: int
    label: str
    tip: str


def _mark_layer(frame: _Frame, marks: Sequence[_Mark]) -> str:
    out = []
    for i, mark in enumerate(marks):
        if not frame.t0 <= mark.time <= frame.t1:
            continue
        x = frame.x(mark.time)
        # Neighbouring labels alternate between two heights so close marks stay readable.
        y = _TOP + 10 + 12 * (i % 2)
        anchor, dx = ("end", -3) if x > frame.width - _RIGHT - 80 else ("start", 3)
        out.append(
            f'<g class="mark"><title>{_esc(mark.tip)}</title><line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" '
            f'y2="{_HEIGHT - _BOTTOM}" stroke="{_MARK_COLOUR}" stroke-dasharray="1 3"/>'
            f'<text x="{x + dx:.1f}" y="{y}" text-anchor="{anchor}" fill="{_MARK_COLOUR}">'
            f"{_esc(mark.label)}</text></g>"
        )
    return "".join(out)


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
    marks: Sequence[_Mark] = (),
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
    body = [
        _value_axis(frame, unit),
        _time_axis(frame),
        _alert_layer(frame, alerts),
        _mark_layer(frame, marks),
    ]
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
