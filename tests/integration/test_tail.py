"""``rigwatch tail`` decodes whatever a rig topic holds, DLQ records included."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rigwatch.kafka import ReliableProducer
from rigwatch.schemas import Codecs

pytestmark = pytest.mark.integration


def test_tail_prints_records_and_dlq_headers_as_json_lines(settings) -> None:
    codecs = Codecs.load()
    producer = ReliableProducer(settings.bootstrap)
    actual = {"event_id": "e1", "rig_id": "rig-000", "label": "20", "observed_time": 5}
    producer.produce(settings.topics.actuals, codecs.actual.encode(actual), key="rig-000")
    producer.produce(
        settings.topics.dlq,
        b"\x00junk",
        key="rig-000",
        headers=[("error", "not_single_object"), ("error_detail", "no marker")],
    )
    producer.flush()

    def tail(topic: str) -> list[dict]:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "rigwatch",
                "tail",
                topic,
                "--from-beginning",
                "--n",
                "1",
                "--timeout",
                "20",
            ],
            env=settings.to_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        return [json.loads(line) for line in out.splitlines()]

    (record,) = tail("actuals")
    assert record["type"] == "Actual" and record["value"] == actual and record["key"] == "rig-000"
    (dead,) = tail(settings.topics.dlq)
    assert dead["type"] == "undecodable"
    assert dead["headers"] == {"error": "not_single_object", "error_detail": "no marker"}
    assert "not_single_object" in dead["decode_error"]
