"""How the ``i3d`` command talks to its user: one-line errors and warnings, strict JSON.

Every message on stderr is one line that starts with the command that
speaks, in argparse's own format for usage errors, so that a log of several
commands (or of a job array) says which one failed::

    i3d extract: error: clips/a.mp4: no such file or folder
    i3d eval classify: warning: 2 videos missing from the submission (A, B); they score -inf

A note (:func:`note`) says what a command is doing through a long silent
pause; a command's ``--quiet`` (:func:`quiet`) silences notes as it does
progress lines, never errors or warnings::

    i3d extract: converting the network for OpenVINO (pooled, fp32; once per model, output and precision: ~15 s on 2 cores)

:func:`i3d.cli.main` names the running command with :func:`command`; code
run outside it (the Python API, tests calling a ``run_*`` function) speaks
as plain ``i3d``. This module imports nothing heavy: ``i3d --help`` loads it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import sys
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["PROGRAM", "command", "current_command", "quiet", "error", "warning", "note", "strict_json", "write_json"]

PROGRAM = "i3d"

_COMMAND: contextvars.ContextVar[str] = contextvars.ContextVar("i3d_command", default=PROGRAM)
_QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("i3d_quiet", default=False)


@contextlib.contextmanager
def command(name: str) -> Iterator[None]:
    """Messages inside speak as ``name`` (e.g. ``"i3d eval classify"``)."""
    token = _COMMAND.set(name)
    try:
        yield
    finally:
        _COMMAND.reset(token)


def current_command() -> str:
    """The prefix of messages now, e.g. ``"i3d extract"``."""
    return _COMMAND.get()


@contextlib.contextmanager
def quiet(on: bool = True) -> Iterator[None]:
    """Inside (with ``on``), :func:`note` prints nothing: a command's ``--quiet``."""
    token = _QUIET.set(on)
    try:
        yield
    finally:
        _QUIET.reset(token)


def _one_line(message: object) -> str:
    # A message that spans lines (some library errors do) is joined, so that
    # each message stays one line that a log filter can match.
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def error(message: object, file: IO[str] | None = None) -> None:
    """Print ``<command>: error: <message>`` on ``file`` (stderr)."""
    print(f"{current_command()}: error: {_one_line(message)}", file=file or sys.stderr, flush=True)


def warning(message: object) -> None:
    """Print ``<command>: warning: <message>`` on stderr."""
    print(f"{current_command()}: warning: {_one_line(message)}", file=sys.stderr, flush=True)


def note(message: object) -> None:
    """Print ``<command>: <message>`` on stderr, unless :func:`quiet`.

    On a terminal the line first erases a progress status line being drawn
    there (:class:`i3d.progress.Progress` draws the next one below)."""
    if _QUIET.get():
        return
    erase = "\r\033[K" if sys.stderr.isatty() else ""
    print(f"{erase}{current_command()}: {_one_line(message)}", file=sys.stderr, flush=True)


def _finite(value: Any, replaced: list[int]) -> Any:
    """``value`` with every NaN and infinity replaced by ``None``; counts them in ``replaced``."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        replaced[0] += 1
        return None
    if isinstance(value, dict):
        return {k: _finite(v, replaced) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, replaced) for v in value]
    return value


def strict_json(value: Any, indent: int | None = None) -> str:
    """``json.dumps`` that never writes ``NaN`` or ``Infinity``, which strict parsers reject.

    Non-finite numbers become ``null``, with one warning on stderr that says
    how many there were.
    """
    try:
        return json.dumps(value, indent=indent, allow_nan=False)
    except ValueError:
        pass
    replaced = [0]
    text = json.dumps(_finite(value, replaced), indent=indent, allow_nan=False)
    warning(f"{replaced[0]} non-finite number(s) (NaN or infinity) written to JSON as null")
    return text


def write_json(value: Any, file: IO[str] | None = None, indent: int | None = None) -> None:
    """Write ``value`` as strict JSON (:func:`strict_json`) and a newline to ``file`` (stdout)."""
    print(strict_json(value, indent=indent), file=file if file is not None else sys.stdout, flush=True)
