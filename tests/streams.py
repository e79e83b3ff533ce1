"""Helpers for tests that talk to the broker or run rigwatch processes."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Message

from rigwatch.harness import Process
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


def assigned(proc: Process, timeout: float = 60.0) -> Process:
    """*proc* once its log says it was given partitions; fails the test with the log's end after *timeout*.

    A scorer reads its deployment and loads the champion before it joins its group (a few
    seconds): a processor started beside it and fed at full speed would otherwise see the
    readings long before their predictions, and close windows on the readings alone.
    """
    deadline = time.monotonic() + timeout
    while "INFO rigwatch.runtime: assigned " not in proc.log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{proc.name} was not assigned partitions:\n{proc.log.read_text()[-2000:]}")
        time.sleep(0.1)
    return proc
