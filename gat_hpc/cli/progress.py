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
