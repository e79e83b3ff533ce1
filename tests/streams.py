"""Helpers for tests that talk to the broker or run rigwatch processes."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Message

from rigwatch.kafka import TopicReader


def collect(
    bootstrap: str,
    topics: list[str],
    done: Callable[[list[Message]], bool],
    timeout: float = 90.0,
    settle: float = 0.0,
) -> list[Message]:
    """Read *topics* from the beginning until ``done(messages)``, then *settle* seconds more.

    Fails the test with what was seen when *timeout* passes first.
    """
    seen: list[Message] = []
    deadline = time.monotonic() + timeout
    with TopicReader(bootstrap, topics) as reader:
        while not done(seen):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f} s with {len(seen)} records on {topics}")
            seen += reader.poll(0.2)
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            seen += reader.poll(0.2)
    return seen


class SeenIds:
    """The event_ids in the records ``collect`` has seen so far, decoding each record once."""

    def __init__(self, decode: Callable[[bytes | None], dict]) -> None:
        self.decode = decode
        self.ids: set[str] = set()
        self._done = 0

    def update(self, seen: list[Message]) -> set[str]:
        for msg in seen[self._done :]:
            self.ids.add(self.decode(msg.value())["event_id"])
        self._done = len(seen)
        return self.ids
