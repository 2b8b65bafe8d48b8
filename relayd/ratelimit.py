"""A token bucket: ``rate`` messages per second with a ``burst`` saved up. Pure."""

from __future__ import annotations


class TokenBucket:
    """Allows ``rate`` events per second on average and ``burst`` at once."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = max(rate, 0.0)
        self.burst = max(float(burst), 1.0)
        self._tokens = self.burst
        self._last = now

    def allow(self, now: float) -> bool:
        """Take one token if there is one; ``now`` is any monotonic clock in seconds."""
        elapsed = max(now - self._last, 0.0)
        self._last = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
