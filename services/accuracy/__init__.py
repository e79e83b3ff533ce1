"""Accuracy windows: predictions joined with delayed actuals by event_id, in Redis."""
