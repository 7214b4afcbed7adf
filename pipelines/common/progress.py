"""One progress helper for every long job: periodic log lines with rate and ETA.

Plain log lines rather than a redrawn bar, because our long jobs run as Ray jobs, in CI logs and in
pytest's captured output, where carriage-return bars turn into noise::

    progress = Progress(total=40, desc="train", every_s=10)
    for step in range(40):
        ...
        progress.update(loss=loss)
    progress.close()

Each line reads ``train: 12/40 (30%) 3.20 it/s elapsed 0:00:04 ETA 0:00:09 | loss=0.412``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("attention_suite.progress")


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(max(0.0, seconds))))


class Progress:
    """Counts work units and logs ``done/total``, rate and ETA at most every ``every_s`` seconds
    (and always for the first and the last unit)."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        every_s: float = 10.0,
        logger: logging.Logger | None = None,
    ):
        self.total, self.desc, self.every_s = total, desc, every_s
        self.logger = logger or log
        self.done = 0
        self.start = time.monotonic()
        self._last = float("-inf")

    def line(self, **metrics: float | str) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            head = f"{self.desc}: {self.done}/{self.total} ({100 * self.done / self.total:.0f}%)"
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            tail = f" ETA {_clock(eta)}" if eta == eta else ""
        else:
            head, tail = f"{self.desc}: {self.done}", ""
        text = f"{head} {rate:.2f} it/s elapsed {_clock(elapsed)}{tail}"
        if metrics:
            shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
            text += f" | {shown}"
        return text

    def update(self, n: int = 1, **metrics: float | str) -> None:
        self.done += n
        now = time.monotonic()
        finished = self.total is not None and self.done >= self.total
        if self.done == n or finished or now - self._last >= self.every_s:
            self._last = now
            self.logger.info(self.line(**metrics))

    def close(self, **metrics: float | str) -> None:
        if self.total is None or self.done < self.total:
            self.logger.info(self.line(**metrics))


def track(items: Iterable[T], desc: str, *, total: int | None = None, every_s: float = 10.0) -> Iterator[T]:
    """Iterate over ``items`` with a :class:`Progress` line."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    progress = Progress(total, desc, every_s=every_s)
    for item in items:
        yield item
        progress.update()
    progress.close()
