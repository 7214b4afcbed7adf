"""A request's deadline, carried from the ingress to the work it pays for.

The ingress gives every model call a wall-clock deadline (its per-request timeout); the model server
turns it into a :class:`Deadline` on its own monotonic clock, and loops whose length is not fixed by the
input alone (tour polishing, say) call :meth:`Deadline.check` between passes. So a request nobody waits
for any more stops within one pass instead of keeping the replica busy. Pure Python, no Ray: model and
solver code may take one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


class DeadlineExceeded(TimeoutError):
    """The request's time ran out while its work was still running."""


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic() after which the work is abandoned

    @classmethod
    def never(cls) -> Deadline:
        return cls(math.inf)

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    @classmethod
    def from_wall_clock(cls, wall: float) -> Deadline:
        """From a ``time.time()`` deadline set by another process (clocks of one cluster agree)."""
        return cls(time.monotonic() + (wall - time.time()))

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise DeadlineExceeded("the request's time ran out before its work finished")
