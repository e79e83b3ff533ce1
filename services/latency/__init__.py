"""Service health windows: throughput, latency, errors, staleness and the scorer group's lag."""
