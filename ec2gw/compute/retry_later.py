"""Work that failed for a passing reason (a node that did not answer, a guest that kept a disk)
waits a while before the worker tries it again, so that its threads go to other work meanwhile."""

from __future__ import annotations

import time


class RetryLater:
    """Keys (an instance's node, a volume, a snapshot, a cached image) and the monotonic time
    before which their work is not tried again."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at: dict[str, float] = {}

    def later(self, key: str) -> None:
        """Try `key` again in `seconds`, not before."""
        self._at[key] = time.monotonic() + self.seconds

    def waits(self, key: str, now: float | None = None) -> bool:
        """True while `key` is not to be tried again (at `now`, a time.monotonic() value; by default the present)."""
        return self._at.get(key, 0.0) > (time.monotonic() if now is None else now)

    def clear(self, key: str) -> None:
        """`key`'s work went through: it waits no more."""
        self._at.pop(key, None)
