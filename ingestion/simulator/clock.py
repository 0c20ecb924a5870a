"""The simulator's clocks: ``SimClock`` (wall time, settable, sped up) and ``ManualClock`` (tests)."""

from __future__ import annotations

import threading
import time
from datetime import datetime

from .core import to_ms


class SimClock:
    """A settable clock: ``now = start + (wall - wall_at_start) * speed`` in epoch seconds."""

    def __init__(self, start: float | datetime | None = None, speed: float = 1.0, wall=time.time):
        self._wall = wall
        self._lock = threading.Lock()
        self._base_wall = wall()
        self._base = self._base_wall if start is None else to_ms(start) / 1000.0
        self.speed = float(speed)

    def __call__(self) -> float:
        with self._lock:
            return self._base + (self._wall() - self._base_wall) * self.speed

    def set(self, now: float | datetime | None = None, speed: float | None = None) -> None:
        current = self()
        with self._lock:
            self._base_wall = self._wall()
            self._base = current if now is None else to_ms(now) / 1000.0
            if speed is not None:
                self.speed = float(speed)

    def advance(self, seconds: float) -> None:
        self.set(now=self() + seconds)


class ManualClock:
    """A clock that only moves when told to (tests): ``clock.advance(60)``."""

    def __init__(self, start: float | datetime):
        self.t = to_ms(start) / 1000.0

    def __call__(self) -> float:
        return self.t

    def set(self, now: float | datetime | None = None, speed: float | None = None) -> None:
        if now is not None:
            self.t = to_ms(now) / 1000.0

    def advance(self, seconds: float) -> None:
        self.t += seconds
