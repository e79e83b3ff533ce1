"""Alerts: rules over MetricWindows, transitions on rig.alerts, state in Redis."""
