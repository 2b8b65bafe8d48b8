"""Login throttling: repeated failures per user name and per client address get 429.

Pure logic with an injected clock. Keys are strings such as ``user:alice`` and
``ip:127.0.0.1``; a key is locked once it has ``max_failures`` failures in
the last ``window`` seconds, until the oldest of them leaves the window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

#: Keys tracked at once; beyond it the stalest are forgotten (memory stays bounded).
MAX_TRACKED_KEYS = 100_000


class LoginThrottle:
    """Counts failed logins in a sliding window."""

    def __init__(self, max_failures: int, window: float, clock: Callable[[], float]) -> None:
        self.max_failures = max_failures
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, keys: Iterable[str]) -> float:
        """Seconds until a login for ``keys`` is allowed again (0: allowed now)."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.max_failures:
                wait = max(wait, times[-self.max_failures] + self.window - now)
        return wait

    def failed(self, keys: Iterable[str]) -> None:
        """Record one failed login for each key."""
        now = self._clock()
        for key in keys:
            self._recent(key, now)
            if key not in self._failures and len(self._failures) >= MAX_TRACKED_KEYS:
                del self._failures[next(iter(self._failures))]
            times = self._failures.setdefault(key, deque(maxlen=self.max_failures))
            times.append(now)

    def succeeded(self, keys: Iterable[str]) -> None:
        """Forget the failures of ``keys`` after a good login."""
        for key in keys:
            self._failures.pop(key, None)
