"""Stop a forwarder whose memory runs away, before it takes the shared machine down with it.

A build that queues without bound can reach gigabytes in seconds (one reached 4.8 GB RSS in
16 s at 10k updates/s). ``RssGuard.check()`` is called wherever the orchestrator waits on a
running forwarder; it samples RSS, keeps the peak, and over the cap SIGKILLs that forwarder's
own process group (a runaway may not honour SIGTERM in time); the row then says so.
"""

from __future__ import annotations

import os
import signal
import time

from bench import procstats

DEFAULT_CAP_MB = 4096.0


class RssGuard:
    """RSS samples of one forwarder (pid = its process group, as ManagedProcess starts it)."""

    def __init__(self, pid: int, cap_mb: float, say=None, label: str = ""):
        self.pid = pid
        self.cap_bytes = cap_mb * 1e6
        self.say = say
        self.label = label
        self.peak = 0
        self.stopped_at: float | None = None  # time.time() when the cap stopped it
        self.stopped_rss = 0

    @property
    def stopped(self) -> bool:
        return self.stopped_at is not None

    def check(self) -> int:
        """Sample RSS now; stop the forwarder if it is over the cap. Returns the sample."""
        if self.stopped:
            return 0
        rss = procstats.rss_bytes(self.pid)
        self.peak = max(self.peak, rss)
        if rss > self.cap_bytes:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.stopped_at = time.time()
            self.stopped_rss = rss
            if self.say is not None:
                self.say(f"{self.label}: forwarder RSS {rss / 1e6:.0f} MB over the cap "
                         f"{self.cap_bytes / 1e6:.0f} MB; stopped it (pid {self.pid})")
        return rss

    def note(self) -> str:
        """The row's note if the cap stopped the forwarder, else ''."""
        if not self.stopped:
            return ""
        return (f"stopped: RSS over cap ({self.stopped_rss / 1e6:.0f} MB > "
                f"{self.cap_bytes / 1e6:.0f} MB)")
