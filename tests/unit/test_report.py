"""``build_report``: fabricated windows and alerts in, one self-contained HTML page out."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pytest

from rigwatch.model.compare import Comparison, PairedCounts, compare
from rigwatch.report import build_report
from rigwatch.report.charts import _bands
from rigwatch.windowing import metric_window

SVG = "{http://www.w3.org/2000/svg}"
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
STEP = 30_000
FEATURES = ["tsb_temp", "psa_bar", "fsa_vol_flow", "vs_vib", "pump_eff", "psb_bar", "tsa_temp", "psc_bar"]
VOID = {"meta", "br", "hr", "img", "input", "link"}


def _window(kind: str, k: int, metrics: dict[str, float], subject: str = "v1") -> dict[str, Any]:
    end = T0 + (k + 1) * STEP
    return {
        "kind": kind,
        "subject": subject,
        "window_start": end - STEP,
        "window_end": end,
        "count": 300,
        "metrics": metrics,
        "detail": None,
    }


def _drift(k: int, subject: str = "v1") -> dict[str, Any]:
    # tsb_temp drifts in windows 3-5; the other features' ratios rank by their index.
    ratios = {f"psi_ratio.{f}": 0.1 * (len(FEATURES) - i) for i, f in enumerate(FEATURES)}
    ratios["psi_ratio.tsb_temp"] = 20.0 if 3 <= k <= 5 else 0.2
    shares = {"prediction.share.3": 0.3, "prediction.share.20": 0.3, "prediction.share.100": 0.4}
    score = {"drift_score": 0.05 if 3 <= k <= 5 else 0.01, "prediction_drift": 0.4}
    return _window("drift", k, ratios | shares | score, subject)


def _alert(k: int, state: str, severity: str, **fields: Any) -> dict[str, Any]:
    return {
        "alert_id": "feature_drift/v1/tsb_temp",
        "rule": "feature_drift",
        "severity": severity,
        "state": state,
        "metric": "psi_ratio.tsb_temp",
        "value": 20.0,
        "threshold": 2.0,
        "window_end": T0 + (k + 1) * STEP,
        "first_seen": T0 + 4 * STEP,
        "message": f"tsb_temp drifted ({state})",
    } | fields


@pytest.fixture
def windows() -> list[dict[str, Any]]:
    drift = [_drift(k) for k in range(10)]
    accuracy = [
        _window("accuracy", k, {"accuracy": 0.99 if k < 6 else 0.7, "estimated_accuracy": 0.98})
        for k in range(10)
    ]
    health = [
        _window("health", k, {"latency_ms.p50": 40.0, "latency_ms.p95": 90.0, "latency_ms.p99": 130.0})
        for k in range(10)
    ]
    health[4]["metrics"] = {"no_data": 1.0}  # an empty window: a gap
    rigs = [_drift(k, subject="rig:rig-000") for k in range(10)]
    return drift + accuracy + health + rigs


@pytest.fixture
def alerts() -> list[dict[str, Any]]:
    return [
        _alert(4, "firing", "warning"),
        _alert(5, "firing", "critical"),
        _alert(8, "resolved", "ok"),
        _alert(7, "firing", "warning", alert_id="accuracy/v1", rule="accuracy", metric="accuracy"),
        _alert(6, "firing", "critical", alert_id="feature_drift/rig:rig-000/tsb_temp"),
    ]


@pytest.fixture
def reference() -> dict[str, Any]:
    edges = np.linspace(1.0, 9.0, 9)
    features = {
        f: {
            "inner_edges": edges.tolist(),
            "counts": [100] * 10,
            "fractions": [0.1] * 10,
            "min": 0.0,
            "max": 10.0,
            "mean": 5.0,
            "std": 2.9,
            "missing": 0,
        }
        for f in FEATURES
    }
    return {
        "features": features,
        "class_priors": {"3": 0.33, "20": 0.33, "100": 0.34},
        "test_predictions": {"predicted_class": {"fractions": {"3": 0.33, "20": 0.33, "100": 0.34}}},
    }


@pytest.fixture
def recent() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {f: rng.uniform(0, 10, 500) for f in FEATURES}
    out["vs_vib"] = np.concatenate([rng.uniform(8, 12, 490), [np.nan] * 10])  # shifted, some missing
    return out


class _TagBalance(HTMLParser):
    """Fails on a closing tag that does not close the innermost open one."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1:]}>"
        self.open.pop()


def _svgs(page: str) -> list[ET.Element]:
    """Every inline chart, parsed as XML: a chart that is not well-formed fails here."""
    return [ET.fromstring(s) for s in re.findall(r"<svg .*?</svg>", page, flags=re.DOTALL)]


def _sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', page, flags=re.DOTALL))


def test_page_is_balanced_html_with_every_section_and_no_external_resource(
    windows, alerts, reference, recent
) -> None:
    page = build_report(windows, alerts, reference, recent, "rig report", notes=["from a test"])
    checker = _TagBalance()
    checker.feed(page)
    checker.close()
    assert page.startswith("<!doctype html>") and checker.open == []
    for heading in (
        "Model version v1",
        "Drift per feature",
        "Drift score and prediction drift",
        "Predicted-class mix",
        "Accuracy: realised and estimated",
        "Latency percentiles",
        "Inputs: reference vs recent",
        "<h2>Alerts</h2>",
        "from a test",
    ):
        assert heading in page
    assert not re.search(r"<script|<link|src=|@import|url\(", page)


def test_every_chart_is_an_svg_with_drawn_series(windows, alerts, reference, recent) -> None:
    page = build_report(windows, alerts, reference, recent, "t")
    svgs = _svgs(page)
    # 5 time charts for the model subject, one histogram per feature.
    assert len(svgs) == 5 + len(FEATURES)
    for svg in svgs[:5]:
        series = [p for p in svg.iter(f"{SVG}path") if p.get("class") == "series"]
        assert series and all(len(p.get("d", "")) > 10 for p in series)
    for svg in svgs[5:]:
        assert len([r for r in svg.iter(f"{SVG}rect") if r.get("class") == "bar"]) == 20


def test_a_gap_in_the_windows_breaks_the_line(windows, alerts) -> None:
    page = build_report(windows, alerts, None, None, "t")
    latency = _svgs(page)[4]
    p99 = next(p for p in latency.iter(f"{SVG}path") if p.findtext(f"{SVG}title") == "latency p99")
    assert p99.get("d", "").count("M") == 2  # the empty window splits it in two


def test_the_top_six_features_by_largest_psi_ratio_get_lines(windows) -> None:
    page = build_report(windows, [], None, None, "t")
    drift = _svgs(page)[0]
    names = [p.findtext(f"{SVG}title") for p in drift.iter(f"{SVG}path") if p.get("class") == "series"]
    assert names[0] == "tsb_temp (max 20×)"
    assert [n.split()[0] for n in names] == [
        "tsb_temp",
        "psa_bar",
        "fsa_vol_flow",
        "vs_vib",
        "pump_eff",
        "psb_bar",
    ]


def test_text_from_records_is_escaped(windows, alerts) -> None:
    evil = "<script>alert(1)</script>"
    windows = [w | {"subject": evil} if w["subject"] == "v1" else w for w in windows]
    alerts = [a | {"alert_id": f"feature_drift/{evil}/tsb_temp", "message": evil} for a in alerts[:3]]
    page = build_report(windows, alerts, None, None, f"title {evil}")
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert len(_svgs(page)) == 5  # the escaped subject still gets its charts, well-formed


def test_alerts_are_bands_and_markers_on_their_charts_and_rows_in_the_table(windows, alerts) -> None:
    page = build_report(windows, alerts, None, None, "t")
    drift, _, _, accuracy, latency = _svgs(page)

    def markers(svg: ET.Element) -> list[str]:
        return [p.get("fill", "") for p in svg.iter(f"{SVG}path") if p.get("class") == "alert-marker"]

    assert markers(drift) == ["#f08c00", "#d62728", "#2ca02c"]  # warning, critical, resolved
    assert markers(accuracy) == ["#f08c00"]
    assert markers(latency) == []
    bands = [r.get("fill") for r in drift.iter(f"{SVG}rect")]
    assert bands == ["#f08c00", "#d62728"]
    table = _sections(page)["alerts"]
    assert table.count("<tr>") == 1 + 4  # header + the model's transitions
    assert "feature_drift/v1/tsb_temp" in table and "Firing at the end of the topic: accuracy/v1" in table
    assert "1 rig alert record(s) not shown" in table


def test_firing_periods_start_at_the_first_breach_and_change_with_severity() -> None:
    records = [_alert(4, "firing", "warning"), _alert(5, "firing", "critical"), _alert(8, "resolved", "ok")]
    first, second = _bands(records)
    assert (first.severity, first.start, first.end) == ("warning", T0 + 4 * STEP, T0 + 6 * STEP)
    assert (second.severity, second.start, second.end) == ("critical", T0 + 6 * STEP, T0 + 9 * STEP)
    (still,) = _bands(records[:1])
    assert still.end is None


def test_rig_segments_only_on_request(windows, alerts) -> None:
    default = build_report(windows, alerts, None, None, "t")
    assert "Rig rig-000" not in default and "feature_drift/rig:rig-000/tsb_temp" not in default
    with_rigs = build_report(windows, alerts, None, None, "t", rigs=True)
    rig = next(body for body in _sections(with_rigs).values() if "<h2>Rig rig-000</h2>" in body)
    assert "Latency percentiles" not in rig  # health windows exist per model version only
    assert "feature_drift/rig:rig-000/tsb_temp" in _sections(with_rigs)["alerts"]


def test_empty_inputs_say_no_data() -> None:
    page = build_report([], [], None, None, "nothing yet")
    sections = _sections(page)
    assert "no data: no metric windows" in sections["subject-0"]
    assert "no data: no reference profile" in sections["inputs"]
    assert "no data: no alert records" in sections["alerts"]
    assert _svgs(page) == []


def test_a_subject_with_only_health_windows_says_no_data_for_the_other_charts(windows) -> None:
    health = [w for w in windows if w["kind"] == "health"]
    page = build_report(health, [], None, None, "t")
    model = _sections(page)["subject-0"]
    assert model.count('class="nodata"') == 4  # feature drift, drift score, class mix, accuracy
    assert len(_svgs(page)) == 1


def test_a_single_window_is_drawn_as_a_point(windows) -> None:
    one = [w for w in windows if w["subject"] == "v1" and w["window_end"] == T0 + STEP]
    page = build_report(one, [], None, None, "t")
    svgs = _svgs(page)
    assert len(svgs) == 5
    assert svgs[0].find(f"{SVG}circle") is not None


def test_histograms_put_the_most_changed_input_first_and_count_missing(reference, recent) -> None:
    page = build_report([], [], reference, recent, "t")
    inputs = _sections(page)["inputs"]
    titles = re.findall(r"<h3>(.*?)</h3>", inputs)
    assert titles[0] == "vs_vib (mm/s)" and len(titles) == len(FEATURES)
    assert "490 readings (10 missing)" in inputs and "newest 500 readings" in inputs


def test_histograms_without_recent_readings_show_the_reference_and_say_so(reference) -> None:
    inputs = _sections(build_report([], [], reference, None, "t"))["inputs"]
    assert "no data: no recent readings" in inputs
    assert inputs.count('class="bar"') == 10 * len(FEATURES)


# --- champion/challenger comparison ------------------------------------------------------------------

# Per labelled window: the challenger right alone 11 times, the champion 4 (or the reverse).
_PAIRS = PairedCounts(
    both_correct=80,
    both_wrong=5,
    champion_only=4,
    challenger_only=11,
    champion_loss_sum=30.0,
    challenger_loss_sum=20.0,
    loss_diff_sq_sum=40.0,
    predicted=110,
    agreements=92,
)
_WINDOW_FIGURES = ("n", "predicted", "agreement", "champion_accuracy", "challenger_accuracy", "b", "c")


def _figures(result: Comparison) -> dict[str, float]:
    out = {k: float(v) for k, v in result.to_dict().items() if isinstance(v, int | float)}
    return out | {"verdict": {"better": 1.0, "worse": -1.0}.get(result.verdict, 0.0)}


def _comparisons(champion: str, challenger: str, per_window: list[PairedCounts]) -> list[dict[str, Any]]:
    """``kind=comparison`` windows as the accuracy processor writes them: cumulative and own figures."""
    out, total = [], PairedCounts()
    for k, this in enumerate(per_window):
        total = total + this
        result = compare(total)
        metrics = _figures(result) | {
            f"window.{name}": value
            for name, value in _figures(compare(this, minimum_pairs=1)).items()
            if name in _WINDOW_FIGURES
        }
        metrics |= {"estimated_champion_accuracy": 0.95, "estimated_challenger_accuracy": 0.93}
        detail = {
            "champion": champion,
            "challenger": challenger,
            "verdict": result.verdict,
            "reason": result.reason,
            "method": result.method,
            "n_needed": result.n_needed,
        }
        end = T0 + (k + 1) * STEP
        out.append(metric_window("comparison", challenger, end - STEP, end, this.n, metrics, detail))
    return out


def _swapped(counts: PairedCounts) -> PairedCounts:
    return replace(
        counts,
        champion_only=counts.challenger_only,
        challenger_only=counts.champion_only,
        champion_loss_sum=counts.challenger_loss_sum,
        challenger_loss_sum=counts.champion_loss_sum,
    )


@pytest.fixture
def comparisons() -> list[dict[str, Any]]:
    # v2: a first window of predictions without labels, then better from its fifth window (400 pairs);
    # v3: worse from its fourth. The accuracy processor wrote v2's third window twice (a restart).
    unlabelled = PairedCounts(predicted=100, agreements=90)
    better = _comparisons("v1", "v2", [unlabelled] + [_PAIRS] * 7)
    worse = _comparisons("v1", "v3", [_swapped(_PAIRS)] * 5)
    return [*better, better[2], *worse]


def _verdict_alert(rule: str, version: str, k: int) -> dict[str, Any]:
    return _alert(
        k,
        "firing",
        "warning",
        alert_id=f"{rule}/{version}",
        rule=rule,
        metric="verdict",
        value=1.0 if rule == "challenger_better" else -1.0,
        threshold=0.5 if rule == "challenger_better" else -0.5,
        first_seen=T0 + (k + 1) * STEP,
        message=f"{rule} ({version})",
    )


def _pair_blocks(page: str) -> dict[str, str]:
    section = _sections(page)["comparison"]
    return dict(
        re.findall(
            r'<div class="pair"><h3>Challenger (\w+) (.*?)(?=<div class="pair">|$)', section, re.DOTALL
        )
    )


def test_comparison_section_shows_each_pairs_latest_verdict_with_its_figures(windows, comparisons) -> None:
    v2_drift = [_drift(k, subject="v2") for k in range(8)]
    alerts = [_verdict_alert("challenger_better", "v2", 4), _verdict_alert("challenger_worse", "v3", 3)]
    page = build_report(windows + v2_drift + comparisons, alerts, None, None, "t")
    checker = _TagBalance()
    checker.feed(page)
    assert checker.open == [] and not re.search(r"<script|<link|src=|@import|url\(", page)
    assert '<a href="#comparison">' in page and "14 comparison" in page
    blocks = _pair_blocks(page)
    assert list(blocks) == ["v2", "v3"]  # by their first window
    v2, v3 = blocks["v2"], blocks["v3"]
    assert "<b>better</b> for challenger v2 up to 2026-01-01 00:04:00 UTC (8 comparison window(s));" in v2
    assert "c=77 vs b=28: Lambda=8296 &gt;= 1/alpha=20" in v2
    latest = compare(sum([_PAIRS] * 7, PairedCounts()))
    for cell in ("84.00 %", "91.00 %", ">28<", ">77<", "95.00 %", "93.00 %", "0.3000", "0.2000"):
        assert cell in v2, cell
    assert "700 labelled pairs of 870 predicted pairs" in v2
    assert f"McNemar exact p {latest.mcnemar_p:.3g}" in v2
    assert f"sequential p {latest.sequential_p:.3g}" in v2
    assert "Pairs still needed: none (decided)" in v2 and "mSPRT Beta(10,10)" in v2
    assert "<b>worse</b> for challenger v3" in v3 and "5 comparison window(s)" in v3


def test_comparison_chart_draws_both_accuracies_agreement_verdict_changes_and_alerts(
    windows, comparisons
) -> None:
    v2_drift = [_drift(k, subject="v2") for k in range(8)]
    alerts = [_verdict_alert("challenger_better", "v2", 4), _verdict_alert("challenger_worse", "v3", 3)]
    page = build_report(windows + v2_drift + comparisons, alerts, None, None, "t")
    section = _sections(page)["comparison"]
    v2_chart, v3_chart = _svgs(section)
    names = [p.findtext(f"{SVG}title") for p in v2_chart.iter(f"{SVG}path") if p.get("class") == "series"]
    assert names == ["champion v1 (cumulative)", "challenger v2 (cumulative)", "agreement (per window)"]
    marks = [g for g in v2_chart.iter(f"{SVG}g") if g.get("class") == "mark"]
    assert [g.findtext(f"{SVG}text") for g in marks] == ["better"]
    assert (
        marks[0].findtext(f"{SVG}title", "").startswith("2026-01-01 00:02:30 verdict inconclusive → better")
    )

    def markers(svg: ET.Element) -> list[str]:
        return [p.get("fill", "") for p in svg.iter(f"{SVG}path") if p.get("class") == "alert-marker"]

    assert markers(v2_chart) == ["#f08c00"] and markers(v3_chart) == ["#f08c00"]
    # The challenger's own section draws its drift, not the comparison alert.
    v2_section = next(body for body in _sections(page).values() if "<h2>Model version v2</h2>" in body)
    assert all(markers(svg) == [] for svg in _svgs(v2_section))
    assert "challenger_better/v2" in _sections(page)["alerts"]


def test_an_undecided_comparison_says_how_many_pairs_are_still_needed(comparisons) -> None:
    early = [w for w in comparisons if w["subject"] == "v2"][:3]
    v2 = _pair_blocks(build_report(early, [], None, None, "t"))["v2"]
    assert "<b>inconclusive</b>" in v2
    assert "Pairs still needed: 106 labelled pairs if the observed rates held" in v2
    assert 'class="mark"' not in v2  # never left inconclusive


def test_a_page_without_comparison_windows_has_no_comparison_section(windows, alerts) -> None:
    page = build_report(windows, alerts, None, None, "t")
    assert "comparison" not in _sections(page) and "#comparison" not in page
    assert "Champion / challenger" not in page and "comparison" not in page.split("<nav>")[0]


def test_comparison_text_from_records_is_escaped(comparisons) -> None:
    evil = "<script>alert(1)</script>"
    rows = [w for w in comparisons if w["subject"] == "v3"]
    rows = [
        w | {"detail": json.dumps(json.loads(w["detail"]) | {"champion": evil, "reason": evil})} for w in rows
    ]
    page = build_report(rows, [], None, None, "t")
    assert "<script" not in page and "champion &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert len(_svgs(page)) == 1
