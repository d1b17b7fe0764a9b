"""Would an OpenVINO backend pay? i3d's torch path against OpenVINO, whole
graph and stage by stage, in one run.

    python benchmarks/bench_openvino_stages.py                 # 1x3x64x224x224, 2 threads, stage graphs dynamic
    python benchmarks/bench_openvino_stages.py --static        # stage graphs of fixed shapes
    python benchmarks/bench_openvino_stages.py --frames 9 --size 32 --chunk 4 --repeats 1 --precisions fp32

The prototype keeps exact streaming: :class:`i3d.chunked.ChunkedI3d`
drives it as it drives torch, its trunk stages swapped for
:class:`OpenVinoStage` s. A stage selects its temporal window in torch
(views) and runs an OpenVINO graph whose temporal padding is one of a few
variants: ``(front, back)`` pad cells for a convolution or pool, ``(at the
sequence start, at its end)`` for an Inception module (inside a window its
3x3x3 branches and pool lose a cell at each end and every branch is cropped
to the common cells). Each variant is built from a small torch module,
converted with ``openvino.convert_model`` and compiled on first use;
activations cross in channels-last memory, ``(B, T, H, W, C)``. The head
(average pool, logits) stays in torch.

Cases, each in fp32 and bf16 (bf16 where the CPU has native bf16):

* ``torch``: i3d's default (fast) path, the whole clip in one call;
* ``ov whole graph``: the ONNX export of the network in OpenVINO;
* ``ov stages, whole clip``: the prototype with the clip in one chunk;
* ``ov stages, chunks of N``: the same in chunks of ``--chunk`` frames.

The first call of each case (compiling, for OpenVINO) is timed apart. Every
case then runs once per round, rounds alternate the cases and each keeps
its best time: only ratios from one run mean anything on a shared machine.
The outcome on a 2-core Zen 4 is in the README ("Speed and precision").
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_runtimes import Run, i3d_case, load_model, openvino_case  # noqa: E402
from benchmarks.clip_flags import add_clip_flags, set_threads  # noqa: E402
from i3d.chunked import LOGITS, ChunkedI3d  # noqa: E402
from i3d.export import export_model  # noqa: E402
from i3d.layers import ChunkTooSmall, MaxPool3dSame, Span, Unit3D  # noqa: E402
from i3d.model import InceptionModule  # noqa: E402
from i3d.runtime import cpu_has_native_bf16  # noqa: E402

# ---- the prototype: one OpenVINO graph per stage and temporal-padding variant ----

Pads = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]  # (front, back) of T, H, W


def _folded(unit: Unit3D) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``unit``'s convolution with its BatchNorm folded in (in float64, so
    folding adds no rounding of its own)."""
    weight, bias = unit.conv3d.weight.detach(), unit.conv3d.bias
    bias = bias.detach() if bias is not None else None
    if unit.bn is None:
        return weight.float(), None if bias is None else bias.float()
    bn = unit.bn
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = bn.bias.double() - bn.running_mean.double() * scale
    if bias is not None:
        shift = shift + bias.double() * scale
    return (weight.double() * scale.view(-1, 1, 1, 1, 1)).float(), shift.float()


class _Conv(nn.Module):
    """A :class:`Unit3D` with fixed padding, as a graph to convert: (B, C, T, H, W) in and out."""

    def __init__(self, unit: Unit3D, pads: Pads) -> None:
        super().__init__()
        weight, bias = _folded(unit)
        self.conv = nn.Conv3d(weight.shape[1], weight.shape[0], unit.kernel, unit.stride, bias=bias is not None)
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            if bias is not None:
                self.conv.bias.copy_(bias)
        self.relu = unit.activation
        (tf, tb), (hf, hb), (wf, wb) = pads
        self.pad = (wf, wb, hf, hb, tf, tb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        y = self.conv(x)
        return F.relu(y) if self.relu else y


class _Pool(nn.Module):
    """A :class:`MaxPool3dSame` with fixed padding (never selected: -inf)."""

    def __init__(self, pool: MaxPool3dSame, pads: Pads) -> None:
        super().__init__()
        self.kernel, self.stride = pool.kernel, pool.stride
        (tf, tb), (hf, hb), (wf, wb) = pads
        self.pad = (wf, wb, hf, hb, tf, tb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad, value=-math.inf)
        return F.max_pool3d(x, self.kernel, self.stride)


class _Inception(nn.Module):
    """An :class:`InceptionModule` on a window: 3x3x3 branches padded in
    time only at the sequence's true ends (``at_start``, ``at_end``), every
    branch cropped to the cells all of them compute."""

    def __init__(self, module: InceptionModule, at_start: bool, at_end: bool) -> None:
        super().__init__()
        space = ((1, 1), (1, 1))  # 3x3 kernels of stride 1: one cell each side
        time = (int(at_start), int(at_end))
        point = ((0, 0), (0, 0), (0, 0))
        self.b0, self.b1a, self.b2a, self.b3b = (
            _Conv(u, point) for u in (module.b0, module.b1a, module.b2a, module.b3b)
        )
        self.b1b, self.b2b = _Conv(module.b1b, (time, *space)), _Conv(module.b2b, (time, *space))
        self.b3a = _Pool(module.b3a, (time, *space))
        self.crop = (1 - time[0], 1 - time[1])  # cells the 1x1 branch has beyond the others

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        front, back = self.crop
        y0 = self.b0(x)
        y0 = y0[:, :, front : y0.shape[2] - back]
        ys = (y0, self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x)))
        return torch.cat(ys, dim=1)


class _ChannelsLast(nn.Module):
    """``graph`` between (B, T, H, W, C) tensors, the storage of channels-last activations."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.inner = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)


class OpenVinoStage:
    """One trunk stage in OpenVINO (a :class:`i3d.layers.SpanStage`).

    Args:
        module: the torch stage (:class:`Unit3D`, :class:`MaxPool3dSame` or
            :class:`InceptionModule`) whose weights and geometry it copies.
        compile: turns a torch graph and an example input into a callable
            on (B, T, H, W, C) numpy arrays (:func:`openvino_compiler`).
    """

    def __init__(self, module: nn.Module, compile: Callable[[nn.Module, torch.Tensor], Callable], static: bool) -> None:
        self.module = module
        self._compile = compile
        self._static = static
        self._graphs: dict[tuple, Callable] = {}

    def input_start(self, out_start: int, length: int) -> int:
        return self.module.input_start(out_start, length)  # type: ignore[operator]

    def output_length(self, length: int) -> int:
        return self.module.output_length(length)  # type: ignore[operator]

    def _window(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, tuple, Callable[[], nn.Module], Span]:
        """The cells ``x`` the graph reads, its variant key and builder, and the output span."""
        module = self.module
        if isinstance(module, InceptionModule):
            at_start, at_end = span.start == 0, span.stop == span.length
            out = Span(span.start + (not at_start), span.stop - (not at_end), span.length)
            if out.stop <= out.start:
                raise ChunkTooSmall(f"cells [{span.start}, {span.stop}) of {span.length} are too few for {module.name}")
            return x, (at_start, at_end), lambda: _Inception(module, at_start, at_end), out
        assert isinstance(module, (Unit3D, MaxPool3dSame))
        x, pads, out = module.window(x, span)
        if isinstance(module, Unit3D):
            return x, pads, lambda: _Conv(module, pads), out
        return x, pads, lambda: _Pool(module, pads), out

    def forward_span(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span]:
        x, variant, build, out = self._window(x, span)
        cells = x.permute(0, 2, 3, 4, 1)  # (B, T, H, W, C), contiguous for channels-last x and B = 1
        key = (variant, cells.shape if self._static else cells.shape[2:])
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._compile(_ChannelsLast(build()), cells)
        y = torch.from_numpy(graph(np.ascontiguousarray(cells.float().numpy())))  # (B, T', H', W', C')
        return y.permute(0, 4, 1, 2, 3), out  # (B, C', T', H', W'), channels-last memory


def openvino_compiler(precision: str, threads: int, static: bool) -> Callable[[nn.Module, torch.Tensor], Callable]:
    """Compiles a stage's graph for (B, T, H, W, C) input like ``example``:
    batch and time dynamic, or every size fixed (``static``: one graph per shape)."""
    import openvino as ov

    core = ov.Core()
    hint = {"fp32": "f32", "bf16": "bf16"}[precision]
    config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}

    def compile(graph: nn.Module, example: torch.Tensor) -> Callable[[np.ndarray], np.ndarray]:
        sizes = list(example.shape) if static else [-1, -1, *example.shape[2:]]
        with torch.no_grad():
            converted = ov.convert_model(graph.eval(), example_input=example.float().contiguous(), input=[sizes])
        request = core.compile_model(converted, "CPU", config).create_infer_request()

        def run(x: np.ndarray) -> np.ndarray:
            request.infer(x, share_inputs=True)
            # A copy: the request reuses its output memory on the next call.
            return request.get_output_tensor(0).data.copy()

        return run

    return compile


def stages_case(weights: str | None, precision: str, threads: int, chunk: int, static: bool) -> Run:
    """i3d's streaming loop with every trunk stage swapped for an :class:`OpenVinoStage`."""
    model = load_model(weights).eval()
    compile = openvino_compiler(precision, threads, static)
    stages = {name: OpenVinoStage(module, compile, static) for name, module in model.stages("Mixed_5c")}

    def run(x: torch.Tensor) -> np.ndarray:
        stream = ChunkedI3d(model, x.shape[2], LOGITS)
        for stage, (name, _) in zip(stream.stages, model.stages("avg_pool")):
            stage.module = stages.get(name, stage.module)  # the head's pool stays in torch
        outs = [y for c in x.split(chunk, dim=2) if (y := stream.push(c)) is not None]
        return torch.cat(outs, dim=2).float().numpy()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_flags(parser, repeats=3, threads=2)
    parser.add_argument("--chunk", type=int, default=32, help="streaming chunk in frames (default: 32)")
    parser.add_argument("--weights", default=None, help="weights (default: calibrated random weights)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], help="(default: fp32 bf16)")
    parser.add_argument(
        "--static", action="store_true", help="stage graphs of fixed shapes (default: batch and time dynamic)"
    )
    args = parser.parse_args()
    set_threads(args)

    precisions = [p for p in args.precisions if p == "fp32" or cpu_has_native_bf16()]
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = Path(tmp) / "i3d.onnx"
        export_model(load_model(args.weights), onnx_file, size=args.size)
        for precision in precisions:
            hint = {"fp32": "f32", "bf16": "bf16"}[precision]
            runs[f"torch {precision}"] = i3d_case(load_model(args.weights), precision)
            runs[f"ov whole graph {precision}"] = openvino_case(onnx_file, args.threads, hint)
            shapes = "static" if args.static else "dynamic"
            for chunk, name in ((args.frames, "whole clip"), (args.chunk, f"chunks of {args.chunk}")):
                case = stages_case(args.weights, precision, args.threads, chunk, args.static)
                runs[f"ov stages ({shapes}), {name} {precision}"] = case

        x = torch.rand(1, 3, args.frames, args.size, args.size) * 2 - 1  # (B, C, T, H, W)
        with torch.inference_mode():
            warmup = {}
            for name, run in runs.items():
                start = time.perf_counter()
                warmup[name] = (run(x), time.perf_counter() - start)
                print(f"{name}: first call {warmup[name][1]:.1f} s", file=sys.stderr, flush=True)
            best = dict.fromkeys(runs, float("inf"))
            for _ in range(args.repeats):
                for name, run in runs.items():
                    start = time.perf_counter()
                    run(x)
                    best[name] = min(best[name], time.perf_counter() - start)

    reference = warmup["torch fp32"][0]
    print(
        f"clip 1x3x{args.frames}x{args.size}x{args.size}, {args.threads} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, best of {args.repeats}"
    )
    print("| path | frames/s | vs torch, same precision | first call (s, compiles) | max rel. diff from torch fp32 |")
    print("| --- | --: | --: | --: | --: |")
    for name, seconds in best.items():
        baseline = best[f"torch {name.split()[-1]}"]
        output, first = warmup[name]
        diff = np.abs(output - reference).max() / np.abs(reference).max()
        print(f"| {name} | {args.frames / seconds:.1f} | {baseline / seconds:.2f}x | {first:.1f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
