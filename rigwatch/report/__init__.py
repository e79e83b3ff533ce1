"""``rigwatch report``: one self-contained HTML page of what the monitoring saw.

Per model version (and, on request, per rig): drift over time per feature and the
drift score, the predicted-class mix, realised and estimated accuracy, latency
percentiles, each with the alerts drawn on its time axis; per champion/challenger pair,
the latest verdict with its figures and both accuracies over time; then input histograms,
reference against recent readings, and the table of alert transitions. Charts are
inline SVG drawn here, so the page needs no network, script, stylesheet or font.

:func:`build_report` is pure (decoded records in, HTML out); :func:`write_report`
reads the topics to their current end and writes the file.

- :mod:`~rigwatch.report.charts`: the SVG primitives (series from the windows, scales, ticks,
  frames, axes, line, stacked and histogram charts, alert bands and markers, marks, legend,
  the ``<svg>`` wrapper).
- :mod:`~rigwatch.report.comparison`: the champion/challenger section (``kind=comparison``).
- :mod:`~rigwatch.report.page`: the sections per subject, inputs, alerts and :func:`build_report`.
- :mod:`~rigwatch.report.topics`: reading the topics to their end and :func:`write_report`.
"""

from __future__ import annotations

from rigwatch.report.page import build_report
from rigwatch.report.topics import write_report

__all__ = ["build_report", "write_report"]
