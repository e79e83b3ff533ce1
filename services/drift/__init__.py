"""Drift processor: sensor readings and predictions -> drift MetricWindows (``rigwatch drift``)."""
