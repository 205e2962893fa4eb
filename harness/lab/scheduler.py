"""Timers on the lab clock: every periodic lab behaviour (health checks, metric publication,
alarm evaluation, Route 53 propagation, SSM command deadlines) is scheduled here.

One thread sleeps until the earliest due timer (converted to wall time through the lab clock)
and runs callbacks in lab-time order. Callbacks must be short; anything slow hands work to its
own thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.clock import Clock

log = logging.getLogger(__name__)


@dataclass(order=True)
class _Timer:
    due: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    period: float | None = field(compare=False, default=None)
    cancelled: bool = field(compare=False, default=False)
    name: str = field(compare=False, default="")


class Handle:
    """A scheduled timer; ``cancel()`` stops it (and its repetitions)."""

    def __init__(self, timer: _Timer) -> None:
        self._timer = timer

    def cancel(self) -> None:
        self._timer.cancelled = True

    @property
    def due(self) -> float:
        return self._timer.due


class Scheduler:
    """Run callbacks at lab times."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[_Timer] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="lab-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def call_at(self, lab_time: float, callback: Callable[[], None], *, name: str = "") -> Handle:
        """Run ``callback`` once at ``lab_time`` (lab epoch seconds)."""
        return self._push(_Timer(lab_time, next(self._seq), callback, None, False, name))

    def call_later(self, delay: float, callback: Callable[[], None], *, name: str = "") -> Handle:
        """Run ``callback`` once after ``delay`` lab seconds."""
        return self.call_at(self.clock.now() + delay, callback, name=name)

    def call_every(
        self,
        period: float,
        callback: Callable[[], None],
        *,
        first: float | None = None,
        name: str = "",
    ) -> Handle:
        """Run ``callback`` every ``period`` lab seconds, first at ``first`` (default: now)."""
        if period <= 0:
            raise ValueError(f"timer period must be positive, got {period!r}")
        due = self.clock.now() if first is None else first
        return self._push(_Timer(due, next(self._seq), callback, period, False, name))

    def _push(self, timer: _Timer) -> Handle:
        with self._cond:
            heapq.heappush(self._heap, timer)
            self._cond.notify_all()
        return Handle(timer)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    while self._heap and self._heap[0].cancelled:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self.clock.wall_duration(self._heap[0].due - self.clock.now())
                    if wait <= 0:
                        timer = heapq.heappop(self._heap)
                        break
                    self._cond.wait(timeout=min(wait, 1.0))
            if timer.period is not None:
                # Reschedule the same timer object (so its Handle can still cancel it), from
                # its due time rather than from now, so periodic timers do not drift.
                with self._cond:
                    timer.due += timer.period
                    timer.seq = next(self._seq)
                    heapq.heappush(self._heap, timer)
            try:
                timer.callback()
            except Exception:
                log.exception("lab timer %s failed", timer.name or timer.callback)
