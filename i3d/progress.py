"""Progress of a batch command, inside each input and across the batch.

On a terminal, one status line rewritten in place; elsewhere (cluster logs,
pipes), a plain line every :data:`LOG_INTERVAL` seconds, so that logs stay
readable; nothing with ``quiet``. Each line gives the input's frames done,
the rate over the input and its ETA::

    i3d extract: [3/10] cam1/a.mp4: 64/300 frames, 45.2 frames/s, ETA 5s

A single count (``total=None``: ``i3d fvd``'s videos, a download's bytes)
has no ``[i/n]`` part::

    i3d fvd stats: 96/2048 videos, 3.1 videos/s, ETA 10m29s
    i3d weights download: rgb_scratch.pt: 12.0/48.3 MiB, 5.1 MiB/s, ETA 7s

and may end with what the caller adds (``postfix``: ``i3d train``'s loss)::

    i3d train: 120/64000 steps, 0.4 steps/s, ETA 44h20m, loss 0.0312, 12.8 clips/s
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "LOG_INTERVAL", "TERMINAL_INTERVAL"]

LOG_INTERVAL = 30.0  # seconds between plain lines in logs
TERMINAL_INTERVAL = 0.2  # seconds between redraws on a terminal


MIB = 1 << 20  # bytes are shown in MiB


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Report frames as they are done.

    Args:
        prefix: what each line starts with (``"i3d extract"``).
        total: inputs in the batch; ``None``: one count, started once.
        unit: what is counted (default ``"frames"``); ``"bytes"`` are shown in MiB.
        stream: where lines go (default stderr).
        quiet: report nothing.
        terminal: rewrite one line in place (default: whether ``stream`` is
            a terminal).
        interval: seconds between lines (default: :data:`TERMINAL_INTERVAL`
            on a terminal, :data:`LOG_INTERVAL` elsewhere).
    """

    def __init__(
        self,
        prefix: str,
        total: int | None,
        *,
        unit: str = "frames",
        stream: TextIO | None = None,
        quiet: bool = False,
        terminal: bool | None = None,
        interval: float | None = None,
    ) -> None:
        self.prefix, self.total, self.unit = prefix, total, unit
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.interval = interval if interval is not None else TERMINAL_INTERVAL if self.terminal else LOG_INTERVAL
        self.index = 0
        self.name = ""
        self.frames = self.done = self.first = 0
        self.started = self.last = time.monotonic()
        self.postfix = ""
        self._drawn = False

    def start(self, name: str, frames: int, done: int = 0) -> None:
        """Input ``name`` of ``frames`` frames (units; 0: unknown) begins, ``done`` of them already done
        (a resumed download); the rate counts only those done from now on."""
        self.index += 1
        self.name, self.frames, self.done, self.first = name, frames, done, done
        self.started = time.monotonic()

    def advance(self, frames: int, postfix: str | None = None) -> None:
        """``frames`` more done; ``postfix``, if given, replaces what the line ends with."""
        self.done += frames
        if postfix is not None:
            self.postfix = postfix
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.show(now)

    def show(self, now: float | None = None) -> None:
        """Write the line now, whatever the interval (a first line; the line again after other output)."""
        self.last = now if now is not None else time.monotonic()
        self._show(self.line(self.last))

    def line(self, now: float | None = None) -> str:
        elapsed = (now if now is not None else time.monotonic()) - self.started
        rate = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
        eta = f", ETA {_duration((self.frames - self.done) / rate)}" if rate > 0 and self.frames else ""
        where = f" [{self.index}/{self.total}]" if self.total is not None else ""
        where += f" {self.name}:" if self.name or self.total is not None else ""
        if self.unit == "bytes":
            unit, done, rate = "MiB", f"{self.done / MIB:.1f}", rate / MIB
            count = f"{done}/{self.frames / MIB:.1f}" if self.frames else done  # a size the server did not give
        else:
            unit, count = self.unit, f"{self.done}/{self.frames}"
        postfix = f", {self.postfix}" if self.postfix else ""
        return f"{self.prefix}:{where} {count} {unit}, {rate:.1f} {unit}/s{eta}{postfix}"

    def _show(self, line: str) -> None:
        if self.quiet:
            return
        if self.terminal:
            self.stream.write("\r\033[K" + line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Remove the status line (before other output, and at the end)."""
        if self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False
