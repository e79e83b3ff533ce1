"""Optional webhook: POST every published alert as JSON, with retries, off the consumer's thread."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from services.alerts.rules import Webhook

__all__ = ["WebhookNotifier"]

log = logging.getLogger("rigwatch.alerts")


class WebhookNotifier:
    """Deliver alerts to a webhook in the background; a slow or dead endpoint never stalls alerting.

    Each alert is tried ``1 + retries`` times with a growing pause (0.5 s, 1 s, 2 s, ...);
    an alert that still fails is logged and counted by *on_failure*.
    """

    def __init__(self, hook: Webhook, on_failure: Callable[[], None] = lambda: None) -> None:
        self.hook, self.on_failure = hook, on_failure
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def send(self, alert: dict[str, Any]) -> None:
        """Queue *alert* for delivery."""
        self._queue.put(alert)

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (waiting at most *timeout_s*), then stop."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            self._deliver(alert)

    def _deliver(self, alert: dict[str, Any]) -> None:
        body = json.dumps(alert).encode()
        for attempt in range(self.hook.retries + 1):
            request = urllib.request.Request(
                self.hook.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.hook.timeout_s) as response:
                    if 200 <= response.status < 300:
                        return
                    problem = f"HTTP {response.status}"
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                problem = repr(exc)
            if attempt < self.hook.retries:
                time.sleep(0.5 * 2**attempt)
        log.warning("webhook %s did not take alert %s: %s", self.hook.url, alert["alert_id"], problem)
        self.on_failure()
