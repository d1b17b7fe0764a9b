"""Decoding ahead of the model, in worker processes that may die.

Worker ``w`` of ``n`` decodes jobs ``w, w + n, w + 2n, ...`` in order and
sends typed messages (:data:`Message`) through a pipe of its own, which the
consumer reads job by job. Frames travel as numpy arrays pickled into the
pipe, not as torch tensors: a tensor sent through ``torch.multiprocessing``
is a file descriptor that the sending process must serve until it is
received, so a worker killed with a chunk in flight (the OOM killer) broke
the consumer with a ``ConnectionRefusedError`` from ``rebuild_storage_fd``.
Frames cost a copy on each side (measured against the tensor
queue in the closing note); a pipe whose writer died only ends (``EOFError``): the job in progress is
reported as failed, the worker is replaced for its remaining jobs, the
batch goes on.

With ``workers=0`` the same messages are produced inline.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from i3d.errors import I3DError
from i3d.video import FlowEngine, Preprocess, open_input
from i3d.video.flow import DEFAULT_FLOW_ENGINE
from i3d.video.listing import check_source
from i3d.video.transforms import CropView

__all__ = [
    "Job",
    "Started",
    "Chunk",
    "Finished",
    "Failed",
    "Message",
    "Prefetch",
    "produce",
    "send_message",
    "receive_message",
]


@dataclass(frozen=True)
class Job:
    """Decode ``path`` as network input for output ``stream``: one source per
    part (two for a combined RGB + flow output), part ``k`` for ``preprocess[k]``,
    ``crops`` views of every frame."""

    path: str
    stream: str
    preprocess: tuple[Preprocess, ...]
    flow_dir: str | None
    crops: int = 1
    flow_engine: str = DEFAULT_FLOW_ENGINE  # the same for every job of a run


@dataclass(frozen=True)
class Started:
    frames: int  # frames each part's chunks will add up to
    fps: float | None
    views: tuple[CropView, ...] = ()  # the crops of every frame, in order


@dataclass(frozen=True)
class Chunk:
    frames: np.ndarray  # (C, t, H, W) or (crops, C, t, H, W) float32 network input
    part: int = 0  # index into Job.preprocess


@dataclass(frozen=True)
class Finished:
    pass


@dataclass(frozen=True)
class Failed:
    message: str  # one line naming the file


Message = Started | Chunk | Finished | Failed


def produce(job: Job, chunk: int, flow: FlowEngine | None) -> Iterator[Message]:
    """A job's messages: :class:`Started`, :class:`Chunk` messages, then
    :class:`Finished`, or :class:`Failed` at any point; one input's failure
    never stops the batch."""
    try:
        check_source(job.path)
        sources = [
            open_input(job.path, p, flow_dir=job.flow_dir, flow_engine=flow, crops=job.crops) for p in job.preprocess
        ]
        counts = {s.num_frames for s in sources}
        if len(counts) != 1:
            got = " and ".join(f"{s.num_frames} {s.preprocess.modality}" for s in sources)
            yield Failed(f"{job.path}: {got} frames; streams combined in one output need as many")
            return
        yield Started(sources[0].num_frames, sources[0].fps, sources[0].views)
        # The parts in step, so that the consumer holds little of one while it waits for the other.
        for step in itertools.zip_longest(*(s.chunks(chunk) for s in sources)):
            for part, c in enumerate(step):
                if c is not None:
                    yield Chunk(c.numpy(), part)
    except I3DError as err:
        yield Failed(str(err))
        return
    except Exception as err:
        yield Failed(f"{job.path}: {type(err).__name__}: {err}")
        return
    yield Finished()


# Chunks a worker decodes ahead of the consumer; memory is this many chunks per worker.
QUEUE_CHUNKS = 4
_POLL_SECONDS = 1.0


def _worker(jobs: list[tuple[int, Job]], chunk: int, conn) -> None:
    """Decode ``(index, job)`` pairs in order into ``conn``. A thread sends
    while this one decodes the next chunks, up to :data:`QUEUE_CHUNKS`
    ahead. Workers compute flow inline: they are the parallelism."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the consumer's to handle
    outbox: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)

    def send() -> None:
        try:
            while (item := outbox.get()) is not None:
                send_message(conn, *item)
        except OSError:  # the consumer closed the pipe: it wants nothing more
            os._exit(0)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    flow = FlowEngine(workers=1, engine=jobs[0][1].flow_engine if jobs else DEFAULT_FLOW_ENGINE)
    try:
        for index, job in jobs:
            for message in produce(job, chunk, flow):
                outbox.put((index, message))
    finally:
        flow.close()
        outbox.put(None)
        sender.join()
        conn.close()


@dataclass(frozen=True)
class _ChunkHeader:
    """Announces a :class:`Chunk` whose array follows as raw bytes: sent that
    way, a chunk is copied once on each side, not pickled and unpickled too."""

    shape: tuple[int, ...]
    dtype: str
    part: int


def send_message(conn, index: int, message: Message) -> None:
    """Send job ``index``'s ``message`` through a ``multiprocessing`` connection."""
    if isinstance(message, Chunk):
        array = np.ascontiguousarray(message.frames)
        conn.send((index, _ChunkHeader(array.shape, array.dtype.str, message.part)))
        conn.send_bytes(memoryview(array).cast("B"))
    else:
        conn.send((index, message))


def receive_message(conn) -> tuple[int, Message]:
    """The next ``(job index, message)`` from :func:`send_message`.

    Raises:
        EOFError: the sender is gone.
    """
    index, message = conn.recv()
    if isinstance(message, _ChunkHeader):
        dtype = np.dtype(message.dtype)
        buffer = bytearray(int(np.prod(message.shape)) * dtype.itemsize)  # writable, for torch.from_numpy
        conn.recv_bytes_into(buffer)
        message = Chunk(np.frombuffer(buffer, dtype).reshape(message.shape), message.part)
    return index, message


@dataclass
class _Slot:
    proc: Any  # multiprocessing.Process
    conn: Any  # the reading end of its pipe


class Prefetch:
    """Jobs decoded ahead of the model by ``workers`` processes (inline with 0).

    Read each job's messages with :meth:`messages`, in job order, to the end.
    """

    def __init__(self, jobs: list[Job], chunk: int, workers: int) -> None:
        workers = min(workers, len(jobs))  # a resumed run may have little left
        self.jobs, self.chunk, self.workers = jobs, chunk, workers
        engine = jobs[0].flow_engine if jobs else DEFAULT_FLOW_ENGINE
        self.flow = FlowEngine(engine=engine) if workers == 0 else None  # every core, shared by all jobs
        self.slots: list[_Slot] = []
        if workers > 0:
            import multiprocessing

            self._ctx = multiprocessing.get_context("spawn")  # fork after torch has started threads can deadlock
            self.slots = [self._start(w) for w in range(workers)]

    def _start(self, first: int) -> _Slot:
        """A worker for jobs ``first, first + n, ...``."""
        mine = [(i, self.jobs[i]) for i in range(first, len(self.jobs), self.workers)]
        receive, send = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_worker, args=(mine, self.chunk, send), daemon=True)
        proc.start()
        send.close()  # only the worker writes: its death ends the pipe
        return _Slot(proc, receive)

    def messages(self, index: int) -> Iterator[Message]:
        """The messages of job ``index``, up to :class:`Finished` or :class:`Failed`."""
        if self.workers == 0:
            yield from produce(self.jobs[index], self.chunk, self.flow)
            return
        w = index % self.workers
        while True:
            slot = self.slots[w]
            try:
                if not slot.conn.poll(_POLL_SECONDS):
                    if slot.proc.is_alive():
                        continue
                    if not slot.conn.poll(0):
                        raise EOFError
                job_index, message = receive_message(slot.conn)
            except (EOFError, OSError):
                yield Failed(f"{self.jobs[index].path}: decoding worker died ({self._death(slot)}); it was replaced")
                self.slots[w] = self._replace(slot, index + self.workers)
                return
            if job_index < index:
                continue  # the end of an earlier job nobody read
            yield message
            if isinstance(message, Finished | Failed):
                return

    def _death(self, slot: _Slot) -> str:
        slot.proc.join(timeout=5)
        code = slot.proc.exitcode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"killed by {name}" + (", out of memory?" if name == "SIGKILL" else "")
        return f"exit code {code}"

    def _replace(self, slot: _Slot, first: int) -> _Slot:
        slot.conn.close()
        if slot.proc.is_alive():
            slot.proc.kill()
            slot.proc.join()
        if first >= len(self.jobs):
            return slot  # nothing left for it
        return self._start(first)

    def close(self) -> None:
        if self.flow is not None:
            self.flow.close()
        for slot in self.slots:
            slot.conn.close()
        for slot in self.slots:
            slot.proc.join(timeout=5)
            if slot.proc.is_alive():
                slot.proc.terminate()
                slot.proc.join()
