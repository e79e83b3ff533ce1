"""Promotion gate: acts on champion/challenger verdicts for deployments that ask it to (auto_promote)."""
