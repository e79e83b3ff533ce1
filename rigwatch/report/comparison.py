"""The champion/challenger section of ``rigwatch report``, from the ``kind=comparison`` windows.

The accuracy processor publishes one such MetricWindow per closed window of a
champion/challenger pair (``services/accuracy/handler.py``): subject the challenger's
version; ``detail`` (JSON) its champion, the verdict, the reason, the method and the
pairs still needed; ``metrics`` the figures over every window of the pair so far
(:func:`rigwatch.model.compare.compare`) and the window's own as ``window.<name>``.
A window emitted again (after a crash) replaces itself here, as it does in the verdict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rigwatch.report.charts import _PALETTE, _esc, _finite, _Line, _line_chart, _Mark, _series, _utc

__all__ = ["comparison_section", "is_comparison_metric"]

# Metric names of comparison windows (an alert on one is drawn on its pair's chart).
_NAMES = frozenset((
    "n", "predicted", "agreement", "b", "c", "mcnemar_p", "log_lambda", "sequential_p", "loss_diff",
    "loss_log_lambda", "loss_p", "verdict", "n_needed",
))  # fmt: skip
_PREFIXES = ("champion_", "challenger_", "estimated_champion_", "estimated_challenger_", "window.")

_INCONCLUSIVE = "inconclusive"

Row = tuple[Mapping[str, Any], dict[str, Any]]  # a comparison window and its decoded detail


def is_comparison_metric(metric: str) -> bool:
    """Whether *metric* is one of the comparison windows' (not of drift, accuracy or health windows).

    Examples
    --------
    >>> [is_comparison_metric(m) for m in ("verdict", "window.agreement", "accuracy")]
    [True, True, False]
    """
    return metric in _NAMES or metric.startswith(_PREFIXES)


def _detail(window: Mapping[str, Any]) -> dict[str, Any]:
    try:
        detail = json.loads(window.get("detail") or "{}")
    except ValueError:
        return {}  # a window is still drawn without its verdict's words
    return detail if isinstance(detail, dict) else {}


def _verdict(row: Row) -> str:
    window, detail = row
    verdict = detail.get("verdict")
    if isinstance(verdict, str) and verdict:
        return verdict
    value = window["metrics"].get("verdict")  # 1 better, -1 worse, 0 inconclusive
    if not _finite(value):
        return "unknown"
    return "better" if value > 0 else "worse" if value < 0 else _INCONCLUSIVE


def _pairs(windows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], list[Row]]:
    """The windows per (champion, challenger), oldest first, one per window end (the last emitted)."""
    by_end: dict[tuple[str, str], dict[int, Row]] = {}
    for w in windows:
        detail = _detail(w)
        pair = (str(detail.get("champion", "?")), str(w["subject"]))
        by_end.setdefault(pair, {})[int(w["window_end"])] = (w, detail)
    return {pair: [rows[end] for end in sorted(rows)] for pair, rows in by_end.items()}


def _changes(rows: Sequence[Row]) -> list[_Mark]:
    """A mark at each window whose verdict differs from the previous one (a pair starts inconclusive)."""
    marks, before = [], _INCONCLUSIVE
    for row in rows:
        verdict = _verdict(row)
        if verdict != before:
            end = int(row[0]["window_end"])
            reason = row[1].get("reason") or ""
            tip = f"{_utc(end)} verdict {before} → {verdict}" + (f": {reason}" if reason else "")
            marks.append(_Mark(end, verdict, tip))
        before = verdict
    return marks


def _headline(champion: str, challenger: str, rows: Sequence[Row]) -> str:
    window, detail = rows[-1]
    m = window["metrics"]

    def fig(key: str, fmt: str) -> str:
        value = m.get(key)
        return format(value, fmt) if _finite(value) else "–"

    def pct(key: str) -> str:
        value = m.get(key)
        return f"{100 * value:.2f} %" if _finite(value) else "–"

    verdict = _verdict(rows[-1])
    needed = m.get("n_needed", detail.get("n_needed"))
    if not _finite(needed):
        still = "unknown (the observed rates give no projection, or the two tests disagree)"
    elif needed == 0:
        still = "none (decided)"
    else:
        still = f"{needed:,.0f} labelled pairs if the observed rates held"
    reason = detail.get("reason")
    table = (
        '<table class="figures"><thead><tr><th></th>'
        f"<th>champion {_esc(champion)}</th><th>challenger {_esc(challenger)}</th></tr></thead><tbody>"
        + "".join(
            f'<tr><td>{_esc(name)}</td><td class="num">{_esc(a)}</td><td class="num">{_esc(b)}</td></tr>'
            for name, a, b in (
                ("accuracy on the labelled pairs", pct("champion_accuracy"), pct("challenger_accuracy")),
                ("right alone (discordant pairs: b, c)", fig("b", ",.0f"), fig("c", ",.0f")),
                (
                    "log loss, mean per pair",
                    fig("champion_log_loss", ".4f"),
                    fig("challenger_log_loss", ".4f"),
                ),
                (
                    "estimated accuracy (own confidence, predicted pairs)",
                    pct("estimated_champion_accuracy"),
                    pct("estimated_challenger_accuracy"),
                ),
            )
        )
        + "</tbody></table>"
    )
    figures = (
        f"{fig('n', ',.0f')} labelled pairs of {fig('predicted', ',.0f')} predicted pairs (the two agree on"
        f" {pct('agreement')} of them). McNemar exact p {fig('mcnemar_p', '.3g')} (one look at a fixed n: for"
        f" reference only); sequential p {fig('sequential_p', '.3g')} (always valid: the verdict's test);"
        f" log-loss p {fig('loss_p', '.3g')}. Pairs still needed: {still}."
    )
    return (
        f'<p class="verdict">Verdict <b>{_esc(verdict)}</b> for challenger {_esc(challenger)} up to'
        f" {_esc(_utc(window['window_end']))} UTC ({len(rows)} comparison window(s))"
        + (f"; {_esc(reason)}" if reason else "")
        + f"</p>{table}<p>{_esc(figures)}</p>"
        + f'<p class="muted">Method: {_esc(detail.get("method") or "not stated")}.</p>'
    )


def _pair_block(
    champion: str, challenger: str, rows: Sequence[Row], alerts: Sequence[Mapping[str, Any]]
) -> str:
    windows = [w for w, _ in rows]
    chart = _line_chart(
        "Accuracy on the same events, and agreement",
        "Per comparison window (window end): each model's accuracy on every labelled pair of the two so far"
        " (cumulative, by label time), in %, and the share of the window's predicted pairs on which they"
        " predict the same class (per window, by event time). Dotted verticals: the verdict changes,"
        " named by the new verdict (hover for the reason).",
        [
            _Line(
                f"champion {champion} (cumulative)", _PALETTE[0], _series(windows, "champion_accuracy", 100)
            ),
            _Line(
                f"challenger {challenger} (cumulative)",
                _PALETTE[1],
                _series(windows, "challenger_accuracy", 100),
            ),
            _Line(
                "agreement (per window)", _PALETTE[5], _series(windows, "window.agreement", 100), dash=True
            ),
        ],
        windows,
        alerts,
        unit="%",
        y_max=100,
        marks=_changes(rows),
        empty="no comparison window with labelled or predicted pairs",
    )
    return (
        f'<div class="pair"><h3>Challenger {_esc(challenger)} against champion {_esc(champion)}</h3>'
        f'{_headline(champion, challenger, rows)}<div class="grid">{chart}</div></div>'
    )


def comparison_section(
    windows: Sequence[Mapping[str, Any]], alerts: Mapping[str, Sequence[Mapping[str, Any]]]
) -> str:
    """The champion/challenger section, or ``""`` without comparison windows.

    Parameters
    ----------
    windows
        ``kind=comparison`` MetricWindows, sorted by window end (topic order within one end).
    alerts
        Alert records on comparison metrics, per challenger version (alert subject).

    Returns
    -------
    str
        ``<section id="comparison">``: per pair, the latest verdict with its figures and the
        chart of both accuracies and the agreement with the verdict changes and alerts.
    """
    pairs = _pairs(windows)
    if not pairs:
        return ""
    intro = (
        "<p>A challenger scores the same events as the champion (shadow or canary) and both are judged"
        " against the same labels. Per champion/challenger pair: the latest verdict of the sequential test"
        " on every labelled pair so far (valid however often it is looked at), its figures, and the figures"
        " over time. b counts the pairs only the champion got right, c those only the challenger got right."
        " The p-values assume independent pairs; consecutive cycles of a rig are correlated, so they can be"
        " too small.</p>"
    )
    blocks = [
        _pair_block(champion, challenger, rows, alerts.get(challenger, ()))
        for (champion, challenger), rows in pairs.items()
    ]
    return f'<section id="comparison"><h2>Champion / challenger</h2>{intro}{"".join(blocks)}</section>'
