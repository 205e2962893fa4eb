"""Clocks: how the harness turns wall-clock instants into the target's (modelled) time.

On AWS, modelled time is wall time. In the lab, everything runs on a scaled clock
(lab time = origin + (wall - origin) x speed) so a 60 s DNS TTL or a 60 s alarm period takes
60/speed wall seconds. Every duration the harness reports is in modelled seconds, so numbers
measured in the lab compare directly with the objective and with AWS.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    """Map wall-clock epoch seconds to the target's modelled epoch seconds.

    ``origin`` is the wall instant at which both clocks agree; ``speed`` is how many modelled
    seconds pass per wall second (1 for AWS).
    """

    origin: float = 0.0
    speed: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"clock speed must be a positive finite number, got {self.speed!r}")
        if not math.isfinite(self.origin):
            raise ValueError(f"clock origin must be finite, got {self.origin!r}")

    @classmethod
    def scaled(cls, speed: float, *, origin: float | None = None) -> Clock:
        """Return a clock running ``speed`` times faster than wall time from ``origin`` (now)."""
        return cls(origin=time.time() if origin is None else origin, speed=speed)

    @property
    def is_real_time(self) -> bool:
        return self.speed == 1.0

    def now(self) -> float:
        """Return the current modelled epoch time."""
        return self.to_model(time.time())

    def to_model(self, wall: float) -> float:
        """Convert a wall-clock epoch instant (e.g. a bastion's `date +%s.%N`) to modelled time."""
        return self.origin + (wall - self.origin) * self.speed

    def to_wall(self, model: float) -> float:
        """Convert a modelled epoch instant back to the wall clock."""
        return self.origin + (model - self.origin) / self.speed

    def wall_duration(self, model_seconds: float) -> float:
        """Return how many wall seconds a modelled duration takes."""
        return model_seconds / self.speed

    def model_duration(self, wall_seconds: float) -> float:
        """Return how many modelled seconds a wall duration represents."""
        return wall_seconds * self.speed

    def sleep(self, model_seconds: float) -> None:
        """Sleep for a modelled duration."""
        if model_seconds > 0:
            time.sleep(model_seconds / self.speed)

    def to_dict(self) -> dict[str, float]:
        return {"origin": self.origin, "speed": self.speed}


REAL_TIME = Clock()
