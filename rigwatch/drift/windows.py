"""Tumbling event-time windows with allowed lateness: which window each record joins.

Only the assignment and the watermark live here; the processor keeps one
accumulator (histograms, counts) per open window start. The watermark is the
largest event time seen minus the allowed lateness; a window closes once the
watermark passes its end, and a record for a closed window is *late*: counted
and reported, never silently dropped or reopened (that would double-emit).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["LATE", "TumblingWindows"]

#: Assignment of a record that arrived after its window closed.
LATE = -1


class TumblingWindows:
    """Tumbling event-time window assigner, updated one batch at a time.

    Parameters
    ----------
    size_ms
        Window length in milliseconds; windows start at multiples of it.
    lateness_ms
        How far behind the largest event time seen a record may be and still
        join its window.

    Examples
    --------
    >>> w = TumblingWindows(size_ms=1000, lateness_ms=200)
    >>> w.update([100, 950, 1150]).assignments.tolist(), w.closed
    ([0, 0, 1000], [])
    >>> w.update([1300, 900]).assignments.tolist(), w.closed, w.late
    ([1000, 0], [0], 0)
    >>> w.update([50]).assignments.tolist(), w.late
    ([-1], 1)
    """

    def __init__(self, size_ms: int = 30_000, lateness_ms: int = 5_000) -> None:
        if size_ms <= 0 or lateness_ms < 0:
            raise ValueError(f"size_ms must be > 0 and lateness_ms >= 0, got {size_ms}, {lateness_ms}")
        self.size_ms = int(size_ms)
        self.lateness_ms = int(lateness_ms)
        self._max_event_ms: int | None = None
        self._open: set[int] = set()
        self._closed_upto: int | None = None  # every window ending at or before this is closed
        self._assignments = np.empty(0, dtype=np.int64)
        self._just_closed: list[int] = []
        self._late = 0

    def update(self, event_times_ms: npt.ArrayLike) -> TumblingWindows:
        """Assign a batch of event times (ms), advance the watermark, close windows."""
        times = np.asarray(event_times_ms, dtype=np.int64).ravel()
        starts = times - times % self.size_ms
        # Lateness is judged against the watermark *before* this batch, so a
        # batch's order inside itself does not decide what is late.
        late = (
            np.zeros(times.shape, dtype=bool)
            if self._closed_upto is None
            else starts + self.size_ms <= self._closed_upto
        )
        self._late += int(late.sum())
        self._assignments = np.where(late, LATE, starts)
        self._open.update(np.unique(starts[~late]).tolist())
        if times.size:
            top = int(times.max())
            self._max_event_ms = top if self._max_event_ms is None else max(self._max_event_ms, top)
        self._just_closed = []
        if self._max_event_ms is not None:
            watermark = self._max_event_ms - self.lateness_ms
            self._just_closed = sorted(s for s in self._open if s + self.size_ms <= watermark)
            self._open.difference_update(self._just_closed)
            # Round down so windows that never received a record count as closed too.
            self._closed_upto = watermark - watermark % self.size_ms
        return self

    @property
    def assignments(self) -> npt.NDArray[np.int64]:
        """Window start (ms) of each record of the last batch, :data:`LATE` if late."""
        return self._assignments.copy()

    @property
    def closed(self) -> list[int]:
        """Window starts closed by the last batch, oldest first: emit these now."""
        return list(self._just_closed)

    @property
    def open_windows(self) -> list[int]:
        """Window starts still accepting records, oldest first."""
        return sorted(self._open)

    @property
    def late(self) -> int:
        """Records seen after their window had closed, since the start."""
        return self._late

    @property
    def watermark_ms(self) -> int | None:
        """Largest event time seen minus the allowed lateness (``None`` before any record)."""
        return None if self._max_event_ms is None else self._max_event_ms - self.lateness_ms
