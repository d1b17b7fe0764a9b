"""What a run tells its user: ``train.jsonl``, the terminal, TensorBoard.

* ``train.jsonl``: one JSON object per line (see :mod:`i3d.train.loop`);
  a resumed run drops the lines past its checkpoint's step, so the file
  reads as one run. Strict JSON: a non-finite number is written as ``null``.
* The terminal: on an interactive terminal a status line
  (:class:`i3d.progress.Progress`: steps, ETA, loss and clips/s), the log
  lines printed above it; otherwise (a job log, a pipe) the log lines alone.
* TensorBoard: event files in ``OUT/tensorboard`` where the ``tensorboard``
  package is installed (the ``tensorboard`` extra); nothing otherwise.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from i3d import console
from i3d.atomic import open_atomic
from i3d.progress import Progress

__all__ = ["RunLog", "Window", "TENSORBOARD_DIR", "finite_or_none"]

TENSORBOARD_DIR = "tensorboard"


def finite_or_none(x: Any) -> Any:
    """Strict JSON has no NaN or infinity: ``None`` for them, the value otherwise."""
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _records_until(path: Path, step: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if isinstance(record, dict) and record.get("step", 0) <= step:
            records.append(record)
    return records


def _tensorboard_writer(folder: Path) -> Any | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the tensorboard package is not installed: no events
        return None
    return SummaryWriter(str(folder))


class RunLog:
    """Rank 0's log of a run.

    Args:
        path: the JSON-lines file.
        echo: print log lines (and show the status line on a terminal).
        keep_until: a resumed run's start step: earlier records are kept.
        total_steps, start_step: for the status line.
        tensorboard: write TensorBoard events (if the package is there).
    """

    def __init__(
        self,
        path: Path,
        echo: bool,
        keep_until: int | None,
        *,
        total_steps: int = 0,
        start_step: int = 0,
        tensorboard: bool = True,
    ) -> None:
        self.path = path
        self.echo = echo
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = _records_until(path, keep_until) if keep_until is not None else []
        with open_atomic(path) as f:
            f.write("".join(json.dumps(r) + "\n" for r in kept))
        self.file: IO[str] = open(path, "a", encoding="utf-8")
        self._status: Progress | None = None
        if echo and total_steps and sys.stderr.isatty():
            self._status = Progress(console.current_command(), None, unit="steps", terminal=True)
            self._status.start("", total_steps, done=start_step)
            self._status.show()
        self._board = _tensorboard_writer(path.parent / TENSORBOARD_DIR) if tensorboard else None

    def write(self, record: dict[str, Any], line: str | None = None, stream: IO[str] | None = None) -> None:
        record = {k: finite_or_none(v) for k, v in record.items()}
        self.file.write(json.dumps(record, allow_nan=False) + "\n")
        self.file.flush()
        self._scalars(record)
        if self.echo and line is not None:
            if self._status is not None:
                self._status.clear()
            print(line, file=stream or sys.stdout, flush=True)
            if self._status is not None:
                self._status.show()  # below the line, as before it

    def progress(self, step: int, loss: float, clips_per_s: float) -> None:
        """Move the status line (if any) to ``step``."""
        if self._status is not None:
            self._status.advance(step - self._status.done, postfix=f"loss {loss:.4f}, {clips_per_s:.1f} clips/s")

    def _scalars(self, record: dict[str, Any]) -> None:
        if self._board is None or record.get("event") not in ("train", "val"):
            return
        prefix = record["event"]
        for key, value in record.items():
            if key not in ("event", "step") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._board.add_scalar(f"{prefix}/{key}", value, record["step"])
        self._board.flush()

    def close(self) -> None:
        if self._status is not None:
            self._status.clear()
        if self._board is not None:
            self._board.close()
        self.file.close()


@dataclass
class Window:
    """Sums of the loss terms over the optimizer steps since the last log line."""

    names: tuple[str, ...]
    steps: int = 0
    sums: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def add(self, terms: list[float]) -> None:
        if not self.sums:
            self.sums = [0.0] * len(terms)
        self.steps += 1
        self.sums = [s + t for s, t in zip(self.sums, terms)]

    def means(self) -> dict[str, float]:
        return {name: s / max(self.steps, 1) for name, s in zip(self.names, self.sums)}

    def rate(self, clips_per_step: int) -> float:
        return self.steps * clips_per_step / max(time.perf_counter() - self.started, 1e-9)
