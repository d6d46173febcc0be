"""A progress line on stderr for long-running work.

On a terminal the line is redrawn in place; otherwise a line is printed at most
every few seconds, and only once the work has run for ``delay`` seconds, so
short runs stay silent. ``quiet`` silences it entirely.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label, quiet=False, delay=1.0, interval=5.0, stream=None):
        self.label = label
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self.delay = delay
        self.interval = interval if not self.tty else 0.1
        self._last = None
        self._drawn = False

    def update(self, text):
        if self.quiet:
            return
        now = time.monotonic()
        if now - self.start < self.delay:
            return
        if self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        line = f"{self.label}: {text} ({now - self.start:.1f} s)"
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


class ProgressBar:
    """Chunks done / total, rate and ETA, redrawn in place on a terminal; silent otherwise."""

    def __init__(self, total, label="sweep", quiet=False, stream=None, width=24):
        self.total = max(int(total), 0)
        self.label = label
        self.stream = stream or sys.stderr
        self.active = not quiet and bool(getattr(self.stream, "isatty", lambda: False)()) and self.total > 0
        self.done = 0
        self.width = width
        self.start = time.monotonic()
        self._last = 0.0

    def advance(self, n=1):
        self.set(self.done + n)

    def set(self, done):
        self.done = done
        if not self.active:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and self.done < self.total:
            return
        self._last = now
        el = now - self.start
        rate = self.done / el if el > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        fill = int(self.width * self.done / self.total)
        eta_s = f"{eta:.0f} s" if eta != float("inf") else "?"
        self.stream.write(f"\r\033[K{self.label} [{'#' * fill}{'.' * (self.width - fill)}] "
                          f"{self.done}/{self.total} chunks, {rate:.1f}/s, ETA {eta_s}")
        self.stream.flush()

    def close(self):
        if self.active:
            self.stream.write("\n")
            self.stream.flush()
