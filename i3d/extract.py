"""Feature extraction for any number of videos of any length.

Two modes:

* ``full``: the network runs fully convolutionally over the whole video
  (streamed in chunks with carried state, see :mod:`i3d.streaming`), one
  row per 8 input frames: ``T' = ceil(T / 8) - 1`` rows for ``T >= 9``, one
  row below that. Row ``j`` of the pooled feature averages Mixed_5c steps
  ``j`` and ``j + 1``, i.e. input frames ``[8j, 8j + 16)``.
* ``clips``: one row per window of ``clip_len`` frames every ``step``
  frames, each window run as a clip of its own and averaged over time (and
  space); a video shorter than a window gives one row for all its frames.

Every output is written atomically and described by a JSON sidecar written
last, so a complete output is exactly one with a valid sidecar; runs skip
those and redo the rest.
"""

from __future__ import annotations

import json
import os
import queue
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from i3d import __version__
from i3d import weights as W
from i3d.atomic import atomic_path, open_atomic, remove_stale
from i3d.errors import I3DError, InputError
from i3d.model import ENDPOINTS, HEAD_POOL, InceptionI3d
from i3d.runtime import Precision, default_device, precision_context, prepare
from i3d.streaming import DEFAULT_CHUNK_FRAMES, OUTPUTS, POOLED, StreamingI3d, output_length
from i3d.video import FlowEngine, Preprocess, open_input

__all__ = [
    "Extractor",
    "Features",
    "Summary",
    "extract_all",
    "expand_inputs",
    "shard_inputs",
    "output_names",
    "is_complete",
    "FORMATS",
    "LAYERS",
    "DEFAULT_CHUNK_FRAMES",
]

Mode = Literal["full", "clips"]
Format = Literal["npy", "npz", "safetensors", "h5"]
FORMATS: tuple[str, ...] = ("npy", "npz", "safetensors", "h5")
LAYERS: tuple[str, ...] = OUTPUTS + tuple(e for e in ENDPOINTS if e.startswith(("Mixed", "Conv", "MaxPool")))
STREAMS = ("rgb", "flow")

# The common "stack" setting of other extractors: 64-frame windows, no overlap.
DEFAULT_CLIP_LEN = 64
DEFAULT_BATCH = 4  # windows per network call in clips mode

VIDEO_SUFFIXES = frozenset(".mp4 .avi .mkv .webm .mov .gif .m4v .mpg .mpeg .flv .wmv .ts .3gp .npy".split())
LIST_SUFFIXES = frozenset({".txt", ".lst"})
_FRAME_NAME = re.compile(r"-0*1x?\.jpg$")


@dataclass
class Features:
    """One video's features for one stream.

    ``data`` is ``(rows, C)`` for ``pooled`` and ``logits``, ``(rows, C, H, W)``
    for a trunk endpoint; ``times[j]`` is the ``[start, end)`` seconds that
    row ``j`` covers; ``meta`` is what the JSON sidecar holds.
    """

    data: np.ndarray
    times: np.ndarray  # (rows, 2)
    meta: dict = field(default_factory=dict)


@dataclass
class _Net:
    stream: str
    model: InceptionI3d
    preprocess: Preprocess
    weights: str
    sha256: str


class Extractor:
    """Extract I3D features from one input at a time.

    Args:
        streams: ``("rgb",)``, ``("flow",)`` or both.
        weights, flow_weights: registry names or checkpoint paths.
        layer: ``"pooled"`` (Mixed_5c after the head's average pool, 1024-d),
            ``"logits"`` or a trunk endpoint such as ``"Mixed_4f"``.
        mode: ``"full"`` or ``"clips"`` (see the module docstring).
        clip_len, step: window and hop in frames, for ``clips``.
        chunk: frames per network call in ``full`` mode (any value >= 1
            gives the same result; it bounds memory).
        batch: windows per network call in ``clips`` mode.
        device: torch device (default: ``cuda:$LOCAL_RANK`` or CUDA if
            available, else CPU).
        precision: ``fp32`` (exact, default), ``tf32``, ``bf16`` or ``fp16``
            (see :mod:`i3d.runtime`).
        flow_dir: cache folder of flow frames, read and written.
        transforms: preprocessing per stream (``{"rgb": preset}``) instead
            of the weights' own.
    """

    def __init__(
        self,
        streams: Sequence[str] = ("rgb",),
        *,
        weights: str | os.PathLike[str] = W.DEFAULT_RGB,
        flow_weights: str | os.PathLike[str] = W.DEFAULT_FLOW,
        layer: str = POOLED,
        mode: Mode = "full",
        clip_len: int = DEFAULT_CLIP_LEN,
        step: int | None = None,
        chunk: int = DEFAULT_CHUNK_FRAMES,
        batch: int = DEFAULT_BATCH,
        device: str | torch.device | None = None,
        precision: Precision = "fp32",
        flow_dir: str | os.PathLike[str] | None = None,
        transforms: dict[str, Preprocess] | None = None,
        progress: bool = False,
    ) -> None:
        if not streams or any(s not in STREAMS for s in streams):
            raise ValueError(f"streams must be among {STREAMS}, got {streams}")
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; choose one of {', '.join(LAYERS)}")
        if mode not in ("full", "clips"):
            raise ValueError(f"mode must be full or clips, got {mode!r}")
        step = clip_len if step is None else step
        for name, value in (("clip_len", clip_len), ("step", step), ("chunk", chunk), ("batch", batch)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.layer, self.mode = layer, mode
        self.clip_len, self.step, self.chunk, self.batch = clip_len, step, chunk, batch
        self.device = torch.device(device) if device is not None else default_device()
        self.precision = precision
        self.flow_dir = flow_dir
        self.nets = [self._load(s, weights if s == "rgb" else flow_weights, progress) for s in streams]
        for net in self.nets:
            net.preprocess = (transforms or {}).get(net.stream, net.preprocess)

    def _load(self, stream: str, spec: str | os.PathLike[str], progress: bool) -> _Net:
        channels = 3 if stream == "rgb" else 2
        model, preprocess, entry, path = W.load_pretrained(spec, in_channels=channels, progress=progress)
        model = prepare(model, self.device, self.precision)  # type: ignore[assignment]
        return _Net(stream, model, preprocess, entry.name if entry else str(path), W.sha256(path))

    @property
    def streams(self) -> list[str]:
        return [n.stream for n in self.nets]

    def _net(self, stream: str) -> _Net:
        for net in self.nets:
            if net.stream == stream:
                return net
        raise ValueError(f"this extractor runs {self.streams}, not {stream!r}")

    def preprocess(self, stream: str) -> Preprocess:
        return self._net(stream).preprocess

    def extract(self, path: str | os.PathLike[str]) -> dict[str, Features]:
        """All streams' features of one input, in memory."""
        out = {}
        for net in self.nets:
            source = open_input(path, net.preprocess, flow_dir=self.flow_dir)
            data = np.concatenate(list(self.rows(net.stream, source.num_frames, source.chunks(self.chunk))))
            out[net.stream] = Features(
                data, *self.describe(net.stream, path, source.num_frames, source.fps, data.shape)
            )
        return out

    def describe(
        self, stream: str, path: str | os.PathLike[str], frames: int, fps: float | None, shape: tuple[int, ...]
    ) -> tuple[np.ndarray, dict]:
        """Row times and the sidecar metadata of an output."""
        net = self._net(stream)
        stride, window = self._row_geometry(stream)
        starts = np.arange(shape[0]) * stride
        spans = np.stack([starts, np.minimum(starts + window, frames)], axis=1).astype(np.float64)
        times = spans / fps if fps else spans
        meta = {
            "video": str(path),
            "stream": stream,
            "shape": list(shape),
            "frames": frames,
            "fps": fps,
            "times": "seconds" if fps else "frames",
            "row_spans": times.tolist(),
            "weights": net.weights,
            **self.settings(stream),
            "i3d_version": __version__,
        }
        return times, meta

    def settings(self, stream: str) -> dict:
        """What an output depends on besides its video: a complete output
        made with other settings is never silently reused."""
        net = self._net(stream)
        stride, window = self._row_geometry(stream)
        return {
            "layer": self.layer,
            "mode": self.mode,
            "window": window,
            "stride": stride,
            "weights_sha256": net.sha256,
            "precision": self.precision,
            "preprocess": asdict(net.preprocess),
        }

    def _row_geometry(self, stream: str) -> tuple[int, int]:
        """``(stride, window)`` in input frames of the output rows."""
        if self.mode == "clips":
            return self.step, self.clip_len
        model = self._net(stream).model
        trunk = self.layer if self.layer not in OUTPUTS else model.trunk[-1]
        stride = model.temporal_stride(trunk)
        # The head averages HEAD_POOL[0] steps of Mixed_5c.
        return stride, stride * HEAD_POOL[0] if self.layer in OUTPUTS else stride

    def num_rows(self, stream: str, frames: int) -> int:
        """Rows of the output for an input of ``frames`` frames."""
        if self.mode == "full":
            return output_length(self._net(stream).model, frames, self.layer)
        return 1 if frames < self.clip_len else (frames - self.clip_len) // self.step + 1

    def rows(self, stream: str, frames: int, chunks: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
        """Feature rows, in order, for the frame chunks ``(C, t, H, W)`` of an
        input of ``frames`` frames."""
        net = self._net(stream)
        if self.mode == "full":
            yield from self._full(net.model, frames, chunks)
        else:
            yield from self._clips(net.model, frames, chunks)

    def _to_rows(self, y: torch.Tensor) -> np.ndarray:
        """Network output ``(B, C, t, ...)`` -> rows ``(B * t, C, ...)``."""
        if self.layer == POOLED:
            y = y.mean(dim=(3, 4))  # (B, 1024, t): one vector per step
        return y.movedim(2, 1).flatten(0, 1).float().cpu().numpy()

    def _full(self, model: InceptionI3d, frames: int, chunks: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
        stream = StreamingI3d(model, frames, self.layer)
        for chunk in chunks:
            with precision_context(self.device, self.precision):
                y = stream.push(chunk.unsqueeze(0).to(self.device, non_blocking=True))
            if y is not None:
                yield self._to_rows(y)

    def _clips(self, model: InceptionI3d, frames: int, chunks: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
        length = min(self.clip_len, frames)
        buffer: torch.Tensor | None = None  # frames [start, start + buffer.shape[1])
        start, next_window, pending = 0, 0, []
        for chunk in chunks:
            buffer = chunk if buffer is None else torch.cat([buffer, chunk], dim=1)
            while next_window + length <= start + buffer.shape[1]:
                offset = next_window - start
                pending.append(buffer[:, offset : offset + length])
                next_window += self.step
                if len(pending) == self.batch:
                    yield self._run_windows(model, pending)
                    pending = []
            drop = min(next_window - start, buffer.shape[1])
            buffer, start = buffer[:, drop:], start + drop
        if pending:
            yield self._run_windows(model, pending)

    def _run_windows(self, model: InceptionI3d, windows: list[torch.Tensor]) -> np.ndarray:
        x = torch.stack(windows).to(self.device, non_blocking=True)  # (B, C, L, H, W)
        with precision_context(self.device, self.precision):
            if self.layer in OUTPUTS:
                y = model.forward_head(model.forward_features(x), pre_logits=self.layer == POOLED)
                y = y.flatten(2).mean(dim=2)  # (B, C): over time (and space)
            else:
                y = model.forward_endpoints(x, (self.layer,))[self.layer].mean(dim=2)  # (B, C, H, W)
        return y.float().cpu().numpy()


# ---- inputs -------------------------------------------------------------------------


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(_FRAME_NAME.search(p.name) for p in path.iterdir())


def expand_inputs(items: Iterable[str | os.PathLike[str]], *, ids: Iterable[str] | None = None) -> list[str]:
    """Turn command-line inputs into a list of videos, in order.

    Each item is a video file, a frame folder, a ``.txt``/``.lst`` file of
    paths (one per line, ``#`` comments), or a folder whose video files and
    frame folders are taken in sorted order. With ``ids`` (e.g. the ids of a
    Charades CSV) each item is a frame root and ``ITEM/ID`` is taken for
    every id. A path that does not exist is kept, so that it is reported as
    a failed input with the others.
    """
    out: list[str] = []
    ids = list(ids) if ids is not None else None
    for item in items:
        path = Path(item)
        if ids is not None:
            out.extend(str(path / i) for i in ids)
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            lines = path.read_text(encoding="utf-8").splitlines()
            out.extend(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
        elif path.is_dir() and not _is_frame_folder(path):
            for child in sorted(path.iterdir()):
                if (child.is_file() and child.suffix.lower() in VIDEO_SUFFIXES) or _is_frame_folder(child):
                    out.append(str(child))
        else:
            out.append(str(path))
    return out


def shard_inputs(inputs: Sequence[str], index: int, count: int) -> list[str]:
    """Part ``index`` of ``count`` disjoint parts that together cover
    ``inputs``: every ``count``-th input, starting at ``index``, after the
    duplicates are dropped (deterministic, balanced in number)."""
    if not 0 <= index < count:
        raise ValueError(f"shard index must be in [0, {count}), got {index}")
    unique = list(dict.fromkeys(inputs))
    return unique[index::count]


def distributed_shard() -> tuple[int, int]:
    """``(rank, world_size)`` from torchrun's environment, else ``(0, 1)``."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def output_names(inputs: Sequence[str]) -> dict[str, str]:
    """A file name stem per input: its own stem, or, where two inputs share
    one, their paths with ``/`` replaced by ``__``. Computed on the whole
    input list so that every shard agrees."""
    stems = {i: Path(i).stem if Path(i).suffix.lower() in VIDEO_SUFFIXES else Path(i).name for i in inputs}
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem] = counts.get(stem, 0) + 1
    names = {}
    for i, stem in stems.items():
        if counts[stem] > 1:
            stem = str(Path(i).with_suffix("")).strip("/").replace("/", "__").replace("..", "up")
        names[i] = stem
    return names


# ---- outputs --------------------------------------------------------------------------


def _paths(out_dir: Path, name: str, stream: str, fmt: str) -> tuple[Path, Path]:
    return out_dir / f"{name}_{stream}.{fmt}", out_dir / f"{name}_{stream}.json"


def _stored_shape(path: Path, fmt: str) -> tuple[int, ...]:
    if fmt == "npy":
        return tuple(np.load(path, mmap_mode="r").shape)
    if fmt == "npz":
        with np.load(path) as z:
            return tuple(z["features"].shape)
    if fmt == "safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            return tuple(f.get_slice("features").get_shape())
    import h5py

    with h5py.File(path, "r") as f:
        return tuple(f["features"].shape)


def is_complete(
    out_dir: str | os.PathLike[str], name: str, stream: str, fmt: str, settings: dict | None = None
) -> bool:
    """Whether a complete, valid output exists: the sidecar parses and the
    data file holds an array of the shape it records.

    Raises:
        InputError: the output is complete but was made with other
            ``settings`` (layer, mode, weights, ...) than these.
    """
    data, sidecar = _paths(Path(out_dir), name, stream, fmt)
    try:
        meta = json.loads(sidecar.read_text())
        complete = _stored_shape(data, fmt) == tuple(meta["shape"])
    except Exception:  # missing, truncated or foreign files all mean "redo"
        return False
    differ = [k for k, v in (settings or {}).items() if complete and meta.get(k) != v]
    if differ:
        got = ", ".join(f"{k} {meta.get(k)!r}" for k in differ)
        raise InputError(data, f"made with other settings ({got}); use another --out or delete it")
    return complete


def save_features(features: Features, out_dir: str | os.PathLike[str], name: str, stream: str, fmt: str) -> Path:
    """Write the data file, then the sidecar, each atomically."""
    out_dir = Path(out_dir)
    data_path, sidecar = _paths(out_dir, name, stream, fmt)
    meta = dict(features.meta, format=fmt)
    array = np.ascontiguousarray(features.data, dtype=np.float32)

    def write(tmp: Path) -> None:
        if fmt == "npy":
            with open(tmp, "wb") as f:
                np.save(f, array)
        elif fmt == "npz":
            with open(tmp, "wb") as f:
                np.savez(f, features=array, times=features.times)
        elif fmt == "safetensors":
            from safetensors.numpy import save_file

            save_file({"features": array, "times": features.times}, str(tmp), metadata={"i3d": json.dumps(meta)})
        else:
            import h5py

            with h5py.File(tmp, "w") as f:
                f["features"] = array
                f["times"] = features.times
                f.attrs["i3d"] = json.dumps(meta)

    with atomic_path(data_path) as tmp:
        write(tmp)
    _write_sidecar(sidecar, meta)
    return data_path


# ---- the batch run ----------------------------------------------------------------------


@dataclass
class Summary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, error)
    frames: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        rate = f", {self.frames / self.seconds:.1f} frames/s" if self.seconds > 0 and self.frames else ""
        return f"done {len(self.done)}, skipped {len(self.skipped)}, failed {len(self.failed)}{rate}"


@dataclass
class _Job:
    path: str
    stream: str
    preprocess: Preprocess
    flow_dir: str | None


def _produce(job: _Job, chunk: int, flow: FlowEngine | None) -> Iterator[tuple[str, object]]:
    """What decoding sends for one job: its size, then chunks, then the end;
    any failure becomes an ``error`` message naming the file, so that one
    input never stops the batch."""
    try:
        source = open_input(job.path, job.preprocess, flow_dir=job.flow_dir, flow_engine=flow)
        yield "start", (source.num_frames, source.fps)
        for c in source.chunks(chunk):
            yield "chunk", c
    except I3DError as err:
        yield "error", str(err)
        return
    except Exception as err:
        yield "error", f"{job.path}: {type(err).__name__}: {err}"
        return
    yield "end", None


def _worker(jobs: list[_Job], chunk: int, out: queue.Queue, release) -> None:
    """Decode ``jobs`` in order into ``out``; errors travel as messages.
    Workers compute flow inline: they are the parallelism (and, being
    daemons, cannot start processes of their own)."""
    flow = FlowEngine(workers=1)
    for index, job in enumerate(jobs):
        for kind, payload in _produce(job, chunk, flow):
            out.put((index, kind, payload))
    flow.close()
    # Tensors travel as shared memory that this process serves: stay alive
    # until the consumer has taken them all.
    release.wait()


class _Prefetch:
    """Decoding and preprocessing in worker processes, ahead of the model.

    Worker ``w`` handles jobs ``w, w + n, w + 2n, ...`` in order through a
    bounded queue of its own, so that the consumer reads jobs in order and
    memory stays at ``QUEUE_CHUNKS`` chunks per worker.
    """

    QUEUE_CHUNKS = 4

    def __init__(self, jobs: list[_Job], chunk: int, workers: int) -> None:
        workers = min(workers, len(jobs))  # a resumed run may have little left
        self.jobs, self.chunk, self.workers = jobs, chunk, workers
        self.procs: list = []
        self.queues: list = []
        self.flow = FlowEngine() if workers == 0 else None  # every core, shared by all jobs
        if workers > 0:
            import torch.multiprocessing as mp

            ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
            self.release = ctx.Event()
            for w in range(workers):
                q = ctx.Queue(maxsize=self.QUEUE_CHUNKS)
                p = ctx.Process(target=_worker, args=(jobs[w::workers], chunk, q, self.release), daemon=True)
                p.start()
                self.procs.append(p)
                self.queues.append(q)

    def messages(self, index: int) -> Iterator[tuple[str, object]]:
        """The messages of job ``index``; jobs must be read in order."""
        if self.workers == 0:
            yield from _produce(self.jobs[index], self.chunk, self.flow)
            return
        q, proc = self.queues[index % self.workers], self.procs[index % self.workers]
        while True:
            try:
                _, kind, payload = q.get(timeout=1.0)
            except queue.Empty:
                if not proc.is_alive():
                    yield "error", f"{self.jobs[index].path}: decoding worker died (exit code {proc.exitcode})"
                    return
                continue
            yield kind, payload
            if kind in ("end", "error"):
                return

    def close(self) -> None:
        if self.flow is not None:
            self.flow.close()
        if self.procs:
            self.release.set()
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join()


def extract_all(
    inputs: Sequence[str],
    out_dir: str | os.PathLike[str],
    extractor: Extractor,
    *,
    fmt: str = "npy",
    names: dict[str, str] | None = None,
    workers: int = 0,
    progress: bool = True,
    log=None,
) -> Summary:
    """Extract every input's features into ``out_dir``; skip complete ones.

    A failing input is reported (to ``log``, default stderr) with its
    one-line error and the run goes on. Returns the :class:`Summary`.
    """
    from tqdm import tqdm

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    log = log or sys.stderr
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = names or output_names(inputs)
    summary = Summary()
    jobs, todo = [], []
    for path in inputs:
        try:
            missing = [s for s in extractor.streams if not is_complete(out, names[path], s, fmt, extractor.settings(s))]
        except InputError as err:
            print(f"i3d extract: {err}", file=log)
            summary.failed.append((path, str(err)))
            continue
        if not missing:
            summary.skipped.append(path)
            continue
        for stream in missing:
            jobs.append(
                _Job(path, stream, extractor.preprocess(stream), extractor.flow_dir and str(extractor.flow_dir))
            )
        todo.append(path)
    prefetch = _Prefetch(jobs, extractor.chunk, workers)
    start = time.perf_counter()
    bar = tqdm(total=len(todo), unit="video", disable=not progress, file=log)
    failed: dict[str, str] = {}
    try:
        for index, job in enumerate(jobs):
            error = failed.get(job.path)
            messages = prefetch.messages(index)
            if error is None:
                error = _extract_job(extractor, job, messages, out, names[job.path], fmt, summary)
            if workers:
                for _ in messages:  # drain the job's queue up to its end
                    pass
            else:
                messages.close()  # stop decoding a job that failed
            if error is not None and job.path not in failed:
                failed[job.path] = error
                print(f"i3d extract: {error}", file=log)
            last_of_video = index + 1 == len(jobs) or jobs[index + 1].path != job.path
            if last_of_video:
                if job.path in failed:
                    summary.failed.append((job.path, failed[job.path]))
                else:
                    summary.done.append(job.path)
                summary.seconds = time.perf_counter() - start
                bar.set_postfix_str(f"{summary.frames / max(summary.seconds, 1e-9):.1f} frames/s")
                bar.update(1)
    finally:
        bar.close()
        prefetch.close()
    return summary


def _extract_job(
    extractor: Extractor,
    job: _Job,
    messages: Iterator[tuple[str, object]],
    out: Path,
    name: str,
    fmt: str,
    summary: Summary,
) -> str | None:
    """Run one (input, stream); return its error message or None."""
    kind, payload = next(messages)
    if kind == "error":
        return str(payload)
    frames, fps = payload  # type: ignore[misc]

    def chunks() -> Iterator[torch.Tensor]:
        for kind, payload in messages:
            if kind == "chunk":
                yield payload  # type: ignore[misc]
            elif kind == "error":
                raise _WorkerError(str(payload))

    data_path, sidecar = _paths(out, name, job.stream, fmt)
    for path in (data_path, sidecar):
        remove_stale(path)  # left by a run killed while writing it
    try:
        rows = extractor.rows(job.stream, frames, chunks())
        if fmt == "npy":
            shape = _write_npy_rows(data_path, rows, extractor.num_rows(job.stream, frames))
        else:
            data = np.concatenate(list(rows))
            shape = data.shape
    except _WorkerError as err:
        return str(err)
    except (I3DError, ValueError, RuntimeError) as err:
        return f"{job.path}: {err}"
    times, meta = extractor.describe(job.stream, job.path, frames, fps, shape)
    if fmt == "npy":
        _write_sidecar(sidecar, dict(meta, format=fmt))
    else:
        save_features(Features(data, times, meta), out, name, job.stream, fmt)
    summary.frames += frames
    return None


def _write_npy_rows(path: Path, rows: Iterator[np.ndarray], count: int) -> tuple[int, ...]:
    """Write ``count`` rows to ``.npy`` as they come, so that memory holds
    one chunk's rows, not the video's (spatial maps of an hour of video take
    gigabytes)."""
    with atomic_path(path) as tmp:
        array, filled = None, 0
        for block in rows:
            if array is None:
                array = np.lib.format.open_memmap(tmp, "w+", np.float32, (count, *block.shape[1:]))
            array[filled : filled + len(block)] = block
            filled += len(block)
        if array is None or filled != count:
            raise ValueError(f"the network gave {filled} rows, expected {count}")
        array.flush()
        shape = array.shape
        del array  # close the map before the rename
    return shape


def _write_sidecar(path: Path, meta: dict) -> None:
    with open_atomic(path) as f:  # last: its presence marks the output complete
        json.dump(meta, f, indent=1)


class _WorkerError(Exception):
    pass
