"""The batch run: every input's features into an output folder, safely.

* Before any work: the output folder must be a writable folder, and no two
  inputs may share an output name (:func:`i3d.video.listing.check_collisions`).
* Complete outputs (:func:`i3d.extract.writers.is_complete`) are skipped;
  with ``verify`` their checksums are checked and mismatches redone.
* Each output is made under an OS lock (:class:`i3d.atomic.OutputLock`):
  an output another live run is making is skipped and reported as such, and
  temporary files are removed only under the lock, i.e. when their owner
  is gone.
* A failing input (unreadable video, dead decoding worker, write error) is
  one line on ``log`` and the run goes on; a full disk stops the run
  cleanly, as nothing more can be written.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from i3d import console
from i3d.atomic import OutputError, OutputLock, check_output_dir, check_replaceable, remove_stale
from i3d.chunked import POOLED
from i3d.errors import I3DError, InputError
from i3d.extract.extractor import Extractor
from i3d.extract.inputs import port_names
from i3d.extract.pipeline import Chunk, Failed, Finished, Job, Message, Prefetch, Started
from i3d.extract.writers import (
    FORMATS,
    Features,
    OutputPaths,
    check_output,
    output_paths,
    save_features,
    write_npy_rows,
    write_sidecar,
)
from i3d.progress import Progress
from i3d.video.listing import check_collisions, check_source, output_names

__all__ = ["Summary", "OutputError", "extract_all", "check_output_dir", "DISK_FULL"]

# errno values meaning that nothing more can be written to the output folder.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


@dataclass
class Summary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # complete already (or made by another run meanwhile)
    busy: list[str] = field(default_factory=list)  # being made by another live run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, error)
    not_done: list[str] = field(default_factory=list)  # not reached: the run stopped
    stopped: str | None = None  # why the run stopped early
    frames: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        rate = f", {self.frames / self.seconds:.1f} frames/s" if self.seconds > 0 and self.frames else ""
        busy = f", {len(self.busy)} left to another run making them" if self.busy else ""
        return f"done {len(self.done)}, skipped {len(self.skipped)}, failed {len(self.failed)}{busy}{rate}"

    @property
    def ok(self) -> bool:
        return not self.failed and self.stopped is None


class _DiskFull(Exception):
    def __init__(self, path: Path) -> None:
        self.path = path


class _WorkerFailed(Exception):
    pass


# What became of one (input, stream) job besides an error message.
_DONE, _BUSY, _SKIPPED, _NOT_DONE = "done", "busy", "skipped", "not done"
_STATES = (_DONE, _BUSY, _SKIPPED, _NOT_DONE)


def _record(summary: Summary, path: str, state: str) -> None:
    if state == _DONE:
        summary.done.append(path)
    elif state == _SKIPPED:
        summary.skipped.append(path)
    elif state == _BUSY:
        summary.busy.append(path)
    elif state == _NOT_DONE:
        summary.not_done.append(path)
    else:
        summary.failed.append((path, state))


def extract_all(
    inputs: Sequence[str],
    out_dir: str | os.PathLike[str],
    extractor: Extractor,
    *,
    fmt: str = "npy",
    names: dict[str, str] | None = None,
    workers: int = 0,
    progress: bool | Progress = True,
    log: TextIO | None = None,
    verify: bool = False,
    layout: str = "i3d",
) -> Summary:
    """Extract every input's features into ``out_dir``; skip complete ones.

    Args:
        inputs: videos, frame folders or arrays (see
            :func:`i3d.video.listing.expand_inputs`).
        names: output name per input (default: :func:`output_names` of
            ``inputs``; give those of the whole list when ``inputs`` is a
            shard of it).
        workers: decoding processes (0: inline).
        progress: report frames done, rate and ETA to ``log`` (see
            :class:`i3d.progress.Progress`), or use this reporter.
        verify: check the checksum of every complete output, redo mismatches.
        layout: ``"i3d"`` or ``"port"`` (:data:`i3d.extract.writers.LAYOUTS`;
            pooled features of one stream in ``.npy`` only, ``names`` then
            default to :func:`i3d.extract.inputs.port_names`).

    Returns:
        The :class:`Summary`; failing inputs are also reported to ``log``
        (default stderr), one line each.

    Raises:
        OutputError: ``out_dir`` is not a writable folder.
        NameCollision: two inputs would share an output.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    log = log or sys.stderr
    if layout == "port":
        check_port_layout(extractor.layer, extractor.mode, fmt, len(extractor.outputs), extractor.crops)
    names = names or (port_names(inputs) if layout == "port" else output_names(inputs))
    check_collisions({i: names[i] for i in inputs})
    out = check_output_dir(out_dir)
    summary = Summary()

    reporter = (
        progress if isinstance(progress, Progress) else Progress("i3d extract", 0, stream=log, quiet=not progress)
    )

    def report(message: str) -> None:  # one input's failure
        reporter.clear()
        console.error(message, file=log)

    jobs: list[Job] = []
    for path in inputs:
        try:
            check_source(path)
            missing = []
            for s in extractor.outputs:
                paths = output_paths(out, names[path], s, fmt, layout)
                for made in (paths.data, paths.sidecar):
                    check_replaceable(made)  # before reading it (a FIFO blocks) or any work
                if check_output(paths, fmt, extractor.settings(s), verify=verify):
                    OutputLock(paths.data).clear_stale()  # left by a run killed just after making it
                else:
                    missing.append(s)
        except (InputError, OutputError) as err:
            report(str(err))
            summary.failed.append((path, str(err)))
            continue
        if not missing:
            summary.skipped.append(path)
        flow_dir = str(extractor.flow_dir) if extractor.flow_dir is not None else None
        jobs.extend(
            Job(
                path,
                s,
                tuple(extractor.preprocess(p) for p in extractor.parts(s)),
                flow_dir,
                crops=extractor.crops,
                flow_engine=extractor.flow_engine,
            )
            for s in missing
        )
    prefetch = Prefetch(jobs, extractor.decode_chunk, workers)
    start = time.perf_counter()
    reporter.total = len(jobs)
    state: dict[str, str] = {}  # input -> _DONE, _SKIPPED, _BUSY, _NOT_DONE or its error
    try:
        for index, job in enumerate(jobs):
            messages = prefetch.messages(index)
            current = state.get(job.path)
            if current in (None, _DONE, _SKIPPED):  # nothing went wrong for this input yet
                try:
                    paths = output_paths(out, names[job.path], job.stream, fmt, layout)
                    reporter.start(f"{names[job.path]} ({job.stream})", 0)
                    result = _run_job(extractor, job, messages, paths, fmt, summary, verify, reporter)
                except _DiskFull as full:
                    # Nothing more can be written: stop now (closing the pipeline stops decoding).
                    report(f"{full.path}: no space left on device")
                    summary.stopped = "no space left on device"
                    break
                if result not in _STATES:
                    report(result)
                if result == _SKIPPED and current == _DONE:
                    result = _DONE
                state[job.path] = result
            _finish(messages, workers)
            if index + 1 == len(jobs) or jobs[index + 1].path != job.path:  # the input's last job
                _record(summary, job.path, state[job.path])
                summary.seconds = time.perf_counter() - start
    finally:
        reporter.clear()
        prefetch.close()
    if summary.stopped is not None:
        recorded = set(summary.done) | set(summary.skipped) | set(summary.busy) | {p for p, _ in summary.failed}
        summary.not_done = [p for p in dict.fromkeys(job.path for job in jobs) if p not in recorded]
        summary.stopped = f"{summary.stopped}: {len(summary.not_done)} inputs not done; free space and rerun to resume"
    return summary


def check_port_layout(layer: str, mode: str, fmt: str, streams: int, crops: int = 1) -> None:
    """The ``port`` layout holds what the port saved: pooled features of
    the whole video (``full`` mode), one stream, one crop, ``.npy``.

    Raises:
        ValueError: other settings.
    """
    if layer != POOLED or mode != "full" or fmt != "npy" or streams != 1 or crops != 1:
        raise ValueError("--layout port needs --layer pooled, --mode full, --format npy, one --stream and --crops 1")


def _finish(messages: Iterator[Message], workers: int) -> None:
    """Read a job's messages to its end (a worker's pipe must be emptied),
    or stop decoding it (inline)."""
    if workers:
        for _ in messages:
            pass
    else:
        messages.close()  # type: ignore[attr-defined]


def _run_job(
    extractor: Extractor,
    job: Job,
    messages: Iterator[Message],
    paths: OutputPaths,
    fmt: str,
    summary: Summary,
    verify: bool,
    reporter: Progress,
) -> str:
    """Make one (input, stream) output under its lock; return :data:`_DONE`,
    :data:`_BUSY`, :data:`_SKIPPED` or a one-line error."""
    try:
        paths.data.parent.mkdir(parents=True, exist_ok=True)
        lock = OutputLock(paths.data)
        if not lock.acquire():
            return _BUSY
    except OSError as err:
        return _write_error(paths.data, err)
    try:
        settings = extractor.settings(job.stream)
        try:
            if check_output(paths, fmt, settings, verify=verify):
                return _SKIPPED  # made by another run since this one looked
        except InputError as err:
            return str(err)
        for path in (paths.data, paths.sidecar):
            remove_stale(path)  # left by a run killed while writing it: its lock is gone
        paths.sidecar.unlink(missing_ok=True)  # the output is incomplete from here until its new sidecar
        return _compute_and_write(extractor, job, messages, paths, fmt, summary, reporter)
    except OSError as err:
        return _write_error(paths.data, err)
    finally:
        lock.release()


def _write_error(path: Path, err: OSError) -> str:
    if err.errno in DISK_FULL:
        raise _DiskFull(path)
    return f"{path}: cannot write ({err.strerror or err})"


def _compute_and_write(
    extractor: Extractor,
    job: Job,
    messages: Iterator[Message],
    paths: OutputPaths,
    fmt: str,
    summary: Summary,
    reporter: Progress,
) -> str:
    first = next(messages)
    if isinstance(first, Failed):
        return first.message
    if not isinstance(first, Started):
        return f"{job.path}: decoding sent {type(first).__name__} before the frame count"
    frames, fps = first.frames, first.fps
    reporter.frames = frames

    def chunks() -> Iterator[tuple[int, torch.Tensor]]:
        for message in messages:
            if isinstance(message, Chunk):
                yield message.part, torch.from_numpy(message.frames)  # (C, t, H, W) or (crops, C, t, H, W)
                if message.part == 0:
                    reporter.advance(message.frames.shape[-3])  # the network has taken the chunk
            elif isinstance(message, Failed):
                raise _WorkerFailed(message.message)
            elif isinstance(message, Finished):
                return

    try:
        rows = extractor.output_rows(job.stream, frames, chunks())
        if paths.layout == "port":
            rows = (r[:, None, None, :] for r in rows)  # (t, 1024) -> (t, 1, 1, 1024), the port's layout
        if fmt == "npy":
            shape, size, digest = write_npy_rows(paths.data, rows, extractor.num_rows(job.stream, frames))
        else:
            data = np.concatenate(list(rows))
    except _WorkerFailed as err:
        return str(err)
    except (I3DError, ValueError, RuntimeError) as err:
        return f"{job.path}: {err}"
    if fmt == "npy":
        _, meta = extractor.describe(job.stream, job.path, frames, fps, shape, first.views)
        write_sidecar(paths, dict(meta, format=fmt), size, digest)
    else:
        times, meta = extractor.describe(job.stream, job.path, frames, fps, data.shape, first.views)
        save_features(Features(data, times, meta), paths, fmt)
    summary.frames += frames
    return _DONE
