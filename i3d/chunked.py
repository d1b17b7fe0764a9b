"""Run I3D over a long input in pieces, with exactly the result of one pass.

:class:`ChunkedI3d` takes consecutive chunks of frames and returns the
outputs they complete. Each layer keeps the few input cells its next outputs
still need (its *carried state*) and computes every output once, with the
padding of the whole sequence: TF "SAME" padding depends on the length of
the whole input, which is why the total number of frames is given up front.
Memory is bounded by the chunk and the carried cells, not by the input.

The result equals ``model`` on the whole input up to floating-point
reassociation (max |difference| ~1e-6), for every chunk size.

With ``backend="openvino"`` an input pushed in one piece (a batch of clips,
a video no longer than a chunk) runs through one compiled OpenVINO graph
instead (:mod:`i3d.openvino`); longer inputs still run chunk by chunk in torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from i3d.choices import DEFAULT_BACKEND, DEFAULT_CHUNK_FRAMES, LOGITS, OUTPUTS, POOLED, Backend
from i3d.layers import ChunkTooSmall, Span, SpanStage
from i3d.model import HEAD_POOL, InceptionI3d
from i3d.runtime import Precision, check_backend, precision_context

__all__ = [
    "ChunkedI3d",
    "OUTPUTS",
    "POOLED",
    "LOGITS",
    "DEFAULT_CHUNK_FRAMES",
    "output_length",
    "RowGeometry",
    "output_geometry",
    "run_chunks",
    "chunked_outputs",
    "run_clips",
]


@dataclass
class _Stage:
    """One layer of the chunked run with its carried input cells."""

    module: SpanStage
    length: int  # cells of this stage's input over the whole sequence
    carry: torch.Tensor | None = None
    carry_start: int = 0  # index of carry's first cell in the sequence
    done: int = 0  # outputs emitted so far


class ChunkedI3d:
    """Feed frames in order, get outputs as soon as they are determined.

    Args:
        model: the network (in eval mode for deterministic results).
        total_frames: frames in the whole input.
        output: a trunk endpoint (``"Mixed_4f"``, ``"Mixed_5c"``, ...),
            ``"pooled"`` or ``"logits"``.
        whole: what runs an input pushed in one piece, ``(B, C, T, H, W)``
            to the output (e.g. :func:`i3d.openvino.whole_graph`); ``None``:
            the model's layers, as for chunks.

    Use :meth:`push` with consecutive chunks ``(B, C, t, H, W)`` whose ``t``
    add up to ``total_frames``; each call returns the newly completed output
    cells along time (possibly none), the last call returns the rest.
    """

    def __init__(
        self,
        model: InceptionI3d,
        total_frames: int,
        output: str = POOLED,
        whole: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if total_frames < 1:
            raise ValueError(f"total_frames must be >= 1, got {total_frames}")
        trunk = model.trunk
        if output in OUTPUTS:
            if trunk[-1] != "Mixed_5c":
                raise ValueError(f"output {output!r} needs a model built up to Logits, this one ends at {trunk[-1]}")
            if output == LOGITS and not model.has_logits:
                raise ValueError("the model has no logits")
            stop = "avg_pool"
        elif output in trunk:
            stop = output
        else:
            raise ValueError(f"unknown output {output!r}; choose one of {', '.join(trunk + OUTPUTS)}")
        self.model = model
        self.output = output
        self.whole = whole
        self.total_frames = total_frames
        self.received = 0
        self.stages: list[_Stage] = []
        length = total_frames
        for _, module in model.stages(stop):
            self.stages.append(_Stage(module, length))
            length = module.output_length(length)
        self.output_length = length

    def push(self, x: torch.Tensor) -> torch.Tensor | None:
        """Add the next frames ``(B, C, t, H, W)``; return the new outputs
        ``(B, C', t', ...)`` in order, or ``None`` if none are complete yet."""
        span = Span(self.received, self.received + x.shape[2], self.total_frames)
        if span.stop > self.total_frames:
            raise ValueError(f"pushed {span.stop} frames, more than the {self.total_frames} announced")
        self.model.check_input(x)
        self.received = span.stop
        if self.runs_whole(span):
            assert self.whole is not None
            self.stages[-1].done = self.output_length
            return self.whole(x)
        y: torch.Tensor | None = x
        for stage in self.stages:
            if y is None:
                return None
            y, span = self._step(stage, y, span)
        if y is not None and self.output == LOGITS:
            y = self.model.classify(y)
        return y

    def runs_whole(self, span: Span) -> bool:
        """Whether frames ``span`` go to :attr:`whole`: they are the whole input."""
        return self.whole is not None and span.start == 0 and span.stop == self.total_frames

    @property
    def finished(self) -> bool:
        return self.stages[-1].done == self.output_length if self.stages else True

    def _step(self, stage: _Stage, x: torch.Tensor, span: Span) -> tuple[torch.Tensor | None, Span]:
        if stage.carry is not None:
            x = torch.cat([stage.carry, x], dim=2)
            span = Span(stage.carry_start, span.stop, span.length)
        try:
            y, out = stage.module.forward_span(x, span)
        except ChunkTooSmall:
            # Not enough context for any new output yet: keep everything.
            stage.carry, stage.carry_start = x, span.start
            return None, span
        if out.start < stage.done:
            # Near the start the carried cells reach back to cell 0, from
            # which earlier outputs are computable again: drop them.
            y = y[:, :, stage.done - out.start :]
            out = Span(stage.done, out.stop, out.length)
        stage.done = out.stop
        keep = stage.module.input_start(out.stop, stage.length)
        # A copy: a view would keep the whole chunk input of the layer alive.
        stage.carry = x[:, :, keep - span.start :].clone() if keep < span.stop else None
        stage.carry_start = keep
        return y, out


def output_length(model: InceptionI3d, total_frames: int, output: str = POOLED) -> int:
    """Number of output cells along time for ``total_frames`` input frames."""
    return ChunkedI3d(model, total_frames, output).output_length


@dataclass(frozen=True)
class RowGeometry:
    """Where an output's rows lie along its input, in input frames: row ``i``
    starts at frame ``i * stride`` and summarises ``window`` frames."""

    stride: int
    window: int


def output_geometry(model: InceptionI3d, output: str = POOLED) -> RowGeometry:
    """The :class:`RowGeometry` of ``output`` (a trunk endpoint, ``pooled`` or ``logits``).

    A trunk endpoint's row covers one step of it. ``pooled`` and ``logits``
    follow the last trunk endpoint, whose HEAD_POOL[0] consecutive steps the
    head averages (stride 1): 2 x 8 = 16 frames for Mixed_5c.
    """
    trunk = model.trunk[-1] if output in OUTPUTS else output
    stride = model.temporal_stride(trunk)
    return RowGeometry(stride, stride * HEAD_POOL[0] if output in OUTPUTS else stride)


def run_chunks(
    model: InceptionI3d, chunks: Iterable[torch.Tensor], total_frames: int, output: str = POOLED
) -> Iterator[torch.Tensor]:
    """Stream ``chunks`` ``(B, C, t, H, W)``, already on the model's device,
    through ``model``, yielding outputs as they complete; see
    :class:`ChunkedI3d`. Each network call runs under
    ``torch.inference_mode`` only (the caller's precision settings apply);
    :func:`chunked_outputs` is the same loop with the device and precision
    handled."""
    yield from _loop(model, chunks, total_frames, output, torch.inference_mode)


def _loop(
    model: InceptionI3d,
    chunks: Iterable[torch.Tensor],
    total_frames: int,
    output: str,
    around_call: Callable[[], AbstractContextManager],
    device: torch.device | None = None,
    whole: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[torch.Tensor]:
    """The chunked loop: ``around_call()`` is entered around each network
    call of the model's layers only (entered per call, so that none of it
    leaks into the caller between outputs; ``whole``, see
    :class:`ChunkedI3d`, runs outside it); the frame count is checked at the end."""
    engine = ChunkedI3d(model, total_frames, output, whole)
    for chunk in chunks:
        x = chunk.unsqueeze(0) if chunk.dim() == 4 else chunk  # (B, C, t, H, W)
        if device is not None:
            x = x.to(device, non_blocking=True)
        span = Span(engine.received, engine.received + x.shape[2], total_frames)
        with contextlib.nullcontext() if engine.runs_whole(span) else around_call():
            y = engine.push(x)
        if y is not None:
            yield y
    if engine.received != total_frames:
        raise ValueError(f"got {engine.received} frames, expected {total_frames}")


# ---- the engine: what predict, extract, FVD and validation call ---------------------


def chunked_outputs(
    model: InceptionI3d,
    chunks: Iterable[torch.Tensor],
    total_frames: int,
    output: str = POOLED,
    *,
    device: torch.device | str = "cpu",
    precision: Precision = "fp32",
    backend: Backend = DEFAULT_BACKEND,
) -> Iterator[torch.Tensor]:
    """The one chunked loop of the package: ``chunks`` of one input through
    a ``model`` made ready by :func:`i3d.runtime.prepare`, outputs as they complete.

    Args:
        model: prepared for ``device`` and ``precision``, in eval mode.
        chunks: consecutive frames ``(C, t, H, W)`` or ``(B, C, t, H, W)``
            on any device (moved to ``device`` here), whose ``t`` add up to
            ``total_frames``.
        total_frames: frames of the whole input, known up front (the
            network's padding depends on it).
        output: a trunk endpoint, ``"pooled"`` or ``"logits"``.
        device, precision: where and how the network runs.
        backend: ``"torch"``, or ``"openvino"`` (the CPU, fp32 or bf16; see
            :class:`i3d.runtime.Placement`): an input given as one chunk
            then runs as one OpenVINO graph (:mod:`i3d.openvino`), a longer
            one in torch, chunk by chunk.

    Yields:
        ``(B, C', t', ...)`` outputs in order (float32 or the precision's
        dtype), together ``output_length`` cells along time.

    Raises:
        ValueError: wrong channels or sizes (see
            :meth:`InceptionI3d.check_input`), or the chunks do not add up
            to ``total_frames``.

    Only the network calls run under :func:`i3d.runtime.precision_context`:
    decoding between them, and the caller between outputs, see none of its
    settings (autocast, TF32, inference mode).
    """
    device = torch.device(device)
    check_backend(device, precision, backend)
    whole = None
    if backend == "openvino":
        from i3d.openvino import whole_graph

        whole = whole_graph(model, output, precision)
    context = lambda: precision_context(device, precision)  # noqa: E731
    yield from _loop(model, chunks, total_frames, output, context, device, whole)


def run_clips(
    model: InceptionI3d,
    batches: Iterable[torch.Tensor],
    output: str = POOLED,
    *,
    device: torch.device | str = "cpu",
    precision: Precision = "fp32",
    backend: Backend = DEFAULT_BACKEND,
) -> Iterator[torch.Tensor]:
    """Many short clips, a batch at a time: each batch ``(B, C, L, H, W)``
    is one whole input per row (all of one length ``L``), run through the
    same loop as :func:`chunked_outputs` in one piece.

    Yields:
        One ``(B, C', t', ...)`` output per batch, ``t' = output_length(L)``.
    """
    for batch in batches:
        if batch.dim() != 5:
            raise ValueError(f"expected clips (B, C, L, H, W), got shape {tuple(batch.shape)}")
        (y,) = chunked_outputs(
            model, [batch], batch.shape[2], output, device=device, precision=precision, backend=backend
        )
        yield y
