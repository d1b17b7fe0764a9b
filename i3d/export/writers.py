"""The network as a file other runtimes load: ONNX, OpenVINO IR, TorchScript.

The graph is traced from the layers' whole-input form (each SAME layer pads
by :func:`i3d.layers.same_padding`, tensor arithmetic on the input's sizes),
so the batch and the clip length stay dynamic, and the frame size too where
the head's window is whole:

* ``B`` and ``T`` are dynamic, ``T >= 9`` for ``pooled`` and ``logits``
  (the head averages 2 steps of Mixed_5c, 8 frames each); any ``T >= 1``
  for a trunk endpoint.
* ``H`` and ``W`` are dynamic for trunk endpoints, and for ``pooled`` and
  ``logits`` when the export size is at least :data:`MIN_DYNAMIC_SIZE`
  (193: Mixed_5c holds the head's full 7 cells); below it the head's window
  shrinks to what is left, and the export is fixed at that frame size.

Input: ``(B, C, T, H, W)`` float32, preprocessed exactly as for
:class:`i3d.InceptionI3d` (the file's metadata records how). Output:
``logits`` ``(B, classes, T')``, ``pooled`` ``(B, 1024, T', H', W')``, or an
endpoint ``(B, C', t, h, w)``.

Every file is written atomically (:mod:`i3d.atomic`), then loaded back and
compared with the torch model at two clip lengths (:data:`CHECK_FRAMES`):
ONNX in ONNX Runtime where it is installed, OpenVINO IR in OpenVINO,
TorchScript in torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from i3d.atomic import atomic_path, open_atomic
from i3d.choices import LOGITS, OUTPUTS
from i3d.errors import I3DError
from i3d.export.formats import FORMATS
from i3d.model import InceptionI3d

__all__ = [
    "MIN_DYNAMIC_SIZE",
    "CHECK_FRAMES",
    "EXPORT_RTOL",
    "ExportError",
    "ExportCheck",
    "export_model",
    "export_weights",
    "dynamic_spatial",
    "exported_program",
]

# Mixed_5c has ceil(n / 32) cells for n pixels (five stride-2 layers); the
# head's 7-cell window is whole from 6 * 32 + 1 = 193 pixels on.
MIN_DYNAMIC_SIZE = 6 * 32 + 1
# Frames traced with: two steps of Mixed_5c (16 / 8), what the head averages.
TRACE_FRAMES = 16
# Clip lengths the written file is checked at: the traced one, one it was
# not traced with (40: 5 steps of Mixed_5c, 4 head outputs), and an odd one
# with a batch of 2, one pixel larger where the frame size is dynamic
# (27 frames: the stride-2 layers see 27, 14 and 7 cells, so TF SAME pads
# them differently from 16 and 40, which stay even).
CHECK_FRAMES = (16, 40, 27)
# The export runs the reference layers (plain padding and convolutions) in
# another runtime, the torch model the fast path: both are float32 sums in
# different orders (tests/tolerances.py derives 1.9e-4 for the worst case
# over random weights); 1e-4 of the output's largest magnitude is the
# promise the export is checked against.
EXPORT_RTOL = 1e-4


class ExportError(I3DError):
    """The model cannot be exported as asked, or the export does not match it."""


@dataclass(frozen=True)
class ExportCheck:
    """The written file against the torch model on one random clip."""

    runtime: str  # "onnxruntime", "openvino" or "torch"
    shape: tuple[int, ...]  # (B, C, T, H, W) of the clip
    relative_error: float  # largest difference over the largest magnitude of the torch model's output


class _Whole(nn.Module):
    """``model`` from its input to ``output``, on whole clips."""

    def __init__(self, model: InceptionI3d, output: str) -> None:
        super().__init__()
        self.model = model
        self.output = output
        self.stop = "avg_pool" if output in OUTPUTS else output

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        for _, stage in self.model.stages(self.stop):
            x = stage(x)
        return self.model.classify(x) if self.output == LOGITS else x


def dynamic_spatial(output: str, size: int) -> bool:
    """Whether an export of ``output`` traced at ``size`` pixels keeps the frame size dynamic."""
    return output not in OUTPUTS or size >= MIN_DYNAMIC_SIZE


def _example(model: InceptionI3d, frames: int, size: int, batch: int = 1, width: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(frames)
    return torch.rand((batch, model.in_channels, frames, size, width or size), generator=g) * 2 - 1


def exported_program(
    model: InceptionI3d, output: str, size: int, width: int | None = None
) -> torch.export.ExportedProgram:
    """``model`` up to ``output`` traced by ``torch.export`` with dynamic
    batch and time, and frame size where :func:`dynamic_spatial` allows
    (else fixed at ``size`` x ``width``, ``width`` defaulting to ``size``)."""
    if not hasattr(getattr(torch.export, "Dim", None), "DYNAMIC"):
        raise ExportError(f"ONNX and OpenVINO exports need torch >= 2.6 (this is {torch.__version__})")
    dynamic = torch.export.Dim.DYNAMIC
    static = getattr(torch.export.Dim, "STATIC", None)  # None before torch 2.7, deprecated after
    spatial = dynamic if dynamic_spatial(output, min(size, width or size)) else static
    shapes = {"x": {0: dynamic, 2: dynamic, 3: spatial, 4: spatial}}
    # Traced sizes of 1 (one head output for 16 frames at 224 pixels) would
    # otherwise be fixed at 1: size-oblivious tracing keeps them symbolic.
    config = importlib.import_module("torch.fx.experimental._config")
    oblivious = config.patch(backed_size_oblivious=True) if hasattr(config, "backed_size_oblivious") else None
    with oblivious or contextlib.nullcontext(), torch.no_grad():
        # A batch of 2: the exporter would record a traced batch of 1 in the output's type.
        example = _example(model, TRACE_FRAMES, size, batch=2, width=width)
        return torch.export.export(_Whole(model, output).eval(), (example,), dynamic_shapes=shapes)


def _onnx_bytes(model: InceptionI3d, output: str, size: int, metadata: dict[str, str]) -> bytes:
    if importlib.util.find_spec("onnxscript") is None:
        raise ExportError("the ONNX exporter needs the onnx and onnxscript packages: pip install onnx onnxscript")
    program = torch.onnx.export(
        exported_program(model, output, size), input_names=["video"], output_names=[output], verbose=False
    )
    proto = program.model_proto
    _name_sizes(proto)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def _name_sizes(proto) -> None:  # type: ignore[no-untyped-def]
    """Name the input's dynamic sizes (the exporter calls them s0, s53, ...),
    in the input's and the output's shapes."""
    names = {0: "batch", 2: "frames", 3: "height", 4: "width"}
    (video,) = proto.graph.input
    symbols = {d.dim_param: names[i] for i, d in enumerate(video.type.tensor_type.shape.dim) if d.dim_param}
    if not symbols:
        return
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, symbols)) + r")\b")
    for value in (*proto.graph.input, *proto.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda m: symbols[m.group(1)], dim.dim_param)


def _relative_error(got: np.ndarray, want: torch.Tensor) -> float:
    want64 = want.double()
    return float((torch.from_numpy(np.asarray(got)).double() - want64).abs().max() / want64.abs().max())


def _check(
    runtime: str, run: Callable[[torch.Tensor], np.ndarray], model: InceptionI3d, output: str, size: int
) -> list[ExportCheck]:
    """Run the export and the torch model on a random clip of each of
    :data:`CHECK_FRAMES`; raise :class:`ExportError` beyond :data:`EXPORT_RTOL`."""
    whole = _Whole(model, output).eval()
    checks = []
    for frames in CHECK_FRAMES:
        odd = frames % 2 == 1
        x = _example(model, frames, size + (odd and dynamic_spatial(output, size)), batch=1 + odd)
        with torch.no_grad():
            want = whole(x)
        got = run(x)
        if tuple(np.shape(got)) != tuple(want.shape):
            raise ExportError(
                f"{runtime} gives shape {tuple(np.shape(got))} for {frames} frames, torch {tuple(want.shape)}"
            )
        check = ExportCheck(runtime, tuple(x.shape), _relative_error(got, want))
        if not check.relative_error <= EXPORT_RTOL:
            raise ExportError(
                f"{runtime} differs from the torch model by {check.relative_error:.2e} relative at {frames} frames "
                f"(allowed {EXPORT_RTOL:.0e})"
            )
        checks.append(check)
    return checks


def _onnxruntime_runner(data: bytes) -> Callable[[torch.Tensor], np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"video": x.numpy()})[0]


def _write_onnx(model, path, output, size, metadata) -> list[ExportCheck]:  # type: ignore[no-untyped-def]
    data = _onnx_bytes(model, output, size, metadata)
    with open_atomic(path, binary=True) as f:
        f.write(data)
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    return _check("onnxruntime", _onnxruntime_runner(Path(path).read_bytes()), model, output, size)


def _write_openvino(model, path, output, size, metadata) -> list[ExportCheck]:  # type: ignore[no-untyped-def]
    if importlib.util.find_spec("openvino") is None:
        raise ExportError("the OpenVINO format needs the openvino package: pip install openvino")
    import openvino

    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        onnx_file = Path(tmp) / "model.onnx"
        onnx_file.write_bytes(_onnx_bytes(model, output, size, metadata))
        ir = openvino.convert_model(onnx_file)
        for key, value in metadata.items():
            ir.set_rt_info(value, ["i3d", key])
        xml = Path(tmp) / "model.xml"
        openvino.save_model(ir, xml, compress_to_fp16=False)
        # The weights first: the .xml names its .bin, and a reader starts from the .xml.
        with atomic_path(path.with_suffix(".bin")) as tmp_bin:
            shutil.copyfile(xml.with_suffix(".bin"), tmp_bin)
        with atomic_path(path) as tmp_xml:
            shutil.copyfile(xml, tmp_xml)
    compiled = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return _check("openvino", lambda x: compiled(x.numpy())[0], model, output, size)


def _write_torchscript(model, path, output, size, metadata) -> list[ExportCheck]:  # type: ignore[no-untyped-def]
    whole = _Whole(model, output).eval()
    with torch.no_grad():
        script = torch.jit.trace(whole, _example(model, TRACE_FRAMES, size), check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(script, buffer, _extra_files={"i3d.json": json.dumps(metadata)})
    with open_atomic(path, binary=True) as f:
        f.write(buffer.getvalue())
    loaded = torch.jit.load(str(path))

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(x).numpy()

    return _check("torch", run, model, output, size)


_WRITERS = {"onnx": _write_onnx, "openvino": _write_openvino, "torchscript": _write_torchscript}


def export_model(
    model: InceptionI3d,
    path: str | os.PathLike[str],
    *,
    format: str = "onnx",
    output: str = LOGITS,
    size: int = 224,
    metadata: dict[str, str] | None = None,
) -> list[ExportCheck]:
    """Write ``model`` up to ``output`` to ``path`` in ``format`` and check it.

    Args:
        model: the network (its weights are copied into the file).
        path: the file (OpenVINO also writes the ``.bin`` beside the ``.xml``).
        format: one of :data:`FORMATS`.
        output: ``"logits"``, ``"pooled"`` or a trunk endpoint of ``model``.
        size: frame size ``H = W`` traced with; the export is fixed at it
            only for ``pooled``/``logits`` below :data:`MIN_DYNAMIC_SIZE`.
        metadata: strings stored in the file (weights, sha256, preprocessing).

    Returns: the checks run on the written file (none for ONNX without
    ONNX Runtime).

    Raises:
        ExportError: an unknown format or output, a missing exporter, or a
            file that does not match the model.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if output not in OUTPUTS and output not in model.trunk:
        raise ExportError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS + model.trunk)}")
    if output in OUTPUTS and not model.has_logits:
        raise ExportError(f"output {output!r} needs a model built up to Logits")
    metadata = {"i3d.output": output, "i3d.input": "video (B, C, T, H, W) float32", **(metadata or {})}
    was_training = model.training
    try:
        with _quiet():
            return _WRITERS[format](model.eval(), path, output, size, metadata)
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' notes (optional torchvision operators, deprecations,
    the tracer's constant sizes, which the checks cover) are not the user's."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._export")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_weights(
    weights: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    format: str = "onnx",
    output: str = LOGITS,
    size: int | None = None,
    progress: bool = True,
) -> list[ExportCheck]:
    """:func:`export_model` for pretrained ``weights`` (a registry name or a
    checkpoint file), with their name, sha256 and preprocessing in the
    file's metadata; ``size`` defaults to the preprocessing's crop."""
    from i3d.weights import load_pretrained, sha256

    model, preprocess, entry, checkpoint = load_pretrained(weights, progress=progress)
    metadata = {
        "i3d.weights": entry.name if entry is not None else os.fspath(weights),
        "i3d.weights_sha256": sha256(checkpoint),
        "i3d.preprocess": json.dumps(dataclasses.asdict(preprocess), sort_keys=True),
        "i3d.classes": str(model.num_classes),
    }
    size = preprocess.crop if size is None else size
    return export_model(model, path, format=format, output=output, size=size, metadata=metadata)
