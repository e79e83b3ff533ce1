"""The one runtime every service runs on (see ``docs/architecture.md``).

- :mod:`~rigwatch.runtime.loop`: the consume → handle → produce → flush → checkpoint loop;
- :mod:`~rigwatch.runtime.checkpoint`: state and offsets written atomically, resume points;
- :mod:`~rigwatch.runtime.outage`: Redis outages waited out;
- :mod:`~rigwatch.runtime.windowed`: accumulate, checkpoint and emit shared windows;
- :mod:`~rigwatch.runtime.records`: what a service gets and gives (no Kafka types).

This package imports nothing itself, so a pure handler may use
:mod:`~rigwatch.runtime.records` without pulling in a Kafka client.
"""
