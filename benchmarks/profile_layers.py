"""Where the time goes: i3d's fast path against OpenVINO, layer by layer.

    python benchmarks/profile_layers.py                     # 1x3x64x224x224, 2 threads, best of 3
    python benchmarks/profile_layers.py --frames 16 --repeats 2   # a quick look

i3d: every stage's layers (:class:`i3d.layers.Unit3D`, the max pools, each
Inception module's concatenation, the head) are timed around their
``forward_span`` with the wall clock; a module's concatenation is its time
less its branches'. OpenVINO: the same network exported to ONNX
(``i3d.export.export_model``) and compiled with ``PERF_COUNT``; each node of
``get_profiling_info()`` is mapped back to the module that made it through
the ONNX file's ``pkg.torch.onnx.name_scopes`` (its reorders to the layer
they feed). Both run in fp32, and in bf16 where the CPU has native bf16
(i3d under autocast, OpenVINO with ``INFERENCE_PRECISION_HINT=bf16``).

Printed per precision: one row per layer (ms, best of ``--repeats``
rounds, the two runtimes alternating), the ratio OpenVINO/i3d (below 1:
OpenVINO is faster there), OpenVINO's kernel for the layer, then the
totals by kind of layer (stem, 3x3x3 and 1x1x1 convolutions, pools,
concatenations, OpenVINO's reorders and pads, head). The machine may be
shared: only ratios inside one run mean anything. On a busy machine
``--threads 1 --cpu-time`` (i3d's thread time, OpenVINO's ``cpu_time``
counter) keeps i3d's rows steady; OpenVINO's ``cpu_time`` counters were
seen to add up to twice the CPU time its process used (fp32, Zen 4), so
its rows then give the ranking and the kernels, and the whole-network
ratio is better taken from the process's CPU time.
"""

from __future__ import annotations

import argparse
import ast
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.clip_flags import add_clip_flags, set_threads  # noqa: E402
from i3d import fast  # noqa: E402
from i3d.export import export_model  # noqa: E402
from i3d.layers import MaxPool3dSame, Unit3D  # noqa: E402
from i3d.model import HeadPool, InceptionI3d, InceptionModule  # noqa: E402
from i3d.runtime import cpu_has_native_bf16, precision_context, prepare  # noqa: E402

HEAD = "head"  # the average pool, the logits and the mean over space
OTHER = "other"  # OpenVINO's shape arithmetic of the padding, and the like
BIG_MS = 1.0  # rows whose OpenVINO kernel is printed
MERGED = ".b0+b2a"  # i3d's one matmul for an Inception module's b0 and b2a (i3d.fast.merged_pointwise)


def kind_of(row: str, module: torch.nn.Module | None) -> str:
    if row.endswith(".concat"):
        return "concat"
    if isinstance(module, MaxPool3dSame):
        return "max pool"
    if row.endswith(MERGED):
        return "1x1x1 conv"
    if isinstance(module, Unit3D):
        if module.kernel == (1, 1, 1):
            return "1x1x1 conv"
        return "7x7x7 stem" if module.kernel[0] == 7 else "3x3x3 conv"
    return row if row in (HEAD, OTHER) else "other"


# ------------------------------------------------------------------ i3d side


class StageTimer:
    """Wall-clock time of every layer's ``forward_span`` (instance
    attributes shadow the method, so the model itself is untouched), and of
    each Inception module's merged 1x1 matmul (row ``<module>.b0+b2a``)."""

    def __init__(self, model: InceptionI3d, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.seconds: dict[str, float] = defaultdict(float)
        self.modules: dict[str, torch.nn.Module] = {}
        for name, module in model.named_modules():
            if isinstance(module, (Unit3D, MaxPool3dSame, InceptionModule, HeadPool)):
                row = HEAD if isinstance(module, HeadPool) or name == "logits" else name
                self.modules[row] = module
                module.forward_span = self._timed(row, module.forward_span)  # type: ignore[method-assign]
            if isinstance(module, InceptionModule):
                _MERGED_ROWS[id(module)] = (self, name + MERGED)
        if not hasattr(fast.merged_pointwise, "timed"):
            fast.merged_pointwise = _timed_merge(fast.merged_pointwise)  # type: ignore[assignment]

    def _timed(self, row: str, call: Callable) -> Callable:
        def run(*args):  # type: ignore[no-untyped-def]
            start = self.clock()
            out = call(*args)
            self.seconds[row] += self.clock() - start
            return out

        return run

    def rows(self, total: float) -> dict[str, float]:
        """Milliseconds per row; a module's own row becomes its concatenation."""
        ms = {row: 1e3 * s for row, s in self.seconds.items()}
        for row, module in self.modules.items():
            if isinstance(module, InceptionModule):
                parts = ("b0", "b1a", "b1b", "b2a", "b2b", "b3a", "b3b", MERGED[1:])
                branches = sum(ms.get(f"{row}.{b}", 0.0) for b in parts)
                ms[f"{row}.concat"] = ms.pop(row) - branches
        ms[HEAD] = ms.get(HEAD, 0.0) + 1e3 * total - sum(ms.values())  # the mean and softmax, if any
        return ms


_MERGED_ROWS: dict[int, tuple[StageTimer, str]] = {}  # id(InceptionModule) -> its timer and row


def _timed_merge(call: Callable) -> Callable:
    def run(module, x):  # type: ignore[no-untyped-def]
        timer, row = _MERGED_ROWS[id(module)]
        start = timer.clock()
        out = call(module, x)
        timer.seconds[row] += timer.clock() - start
        return out

    run.timed = True  # type: ignore[attr-defined]
    return run


def profile_i3d(model: InceptionI3d, precision: str, cpu_time: bool) -> Callable[[torch.Tensor], dict[str, float]]:
    cpu = torch.device("cpu")
    prepare(model, cpu, precision)  # type: ignore[arg-type]
    clock = time.thread_time if cpu_time else time.perf_counter
    timer = StageTimer(model, clock)

    def run(x: torch.Tensor) -> dict[str, float]:
        timer.seconds.clear()
        with precision_context(cpu, precision):  # type: ignore[arg-type]
            start = clock()
            model(x)
            total = clock() - start
        return timer.rows(total)

    return run


# ------------------------------------------------------------- OpenVINO side


def onnx_rows(onnx_file: Path) -> dict[str, str]:
    """ONNX node name -> row, from the exporter's module scopes."""
    import onnx

    rows = {}
    for node in onnx.load(str(onnx_file), load_external_data=False).graph.node:
        scopes = next(
            (ast.literal_eval(p.value) for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), []
        )
        modules = [s.removeprefix("model.") for s in scopes if s.startswith("model.")]
        modules = [m.removesuffix(".bn").removesuffix(".conv3d") for m in modules]
        if not modules:
            rows[node.name] = OTHER
            continue
        row = modules[-1]
        if node.op_type == "Concat" and row.startswith("Mixed_") and "." not in row:
            row += ".concat"
        elif row.startswith(("avg_pool", "logits", "dropout")):
            row = HEAD
        elif node.op_type not in ("Conv", "MaxPool", "Pad", "Concat", "BatchNormalization", "Relu"):
            row = OTHER  # the padding's shape arithmetic
        rows[node.name] = row
    return rows


def profile_openvino(onnx_file: Path, threads: int, precision: str, cpu_time: bool) -> Callable[[torch.Tensor], dict]:
    import openvino

    rows = onnx_rows(onnx_file)
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": precision,
        "PERFORMANCE_HINT": "LATENCY",
        "PERF_COUNT": True,
    }
    request = openvino.Core().compile_model(openvino.convert_model(onnx_file), "CPU", config).create_infer_request()
    names = sorted(rows, key=len, reverse=True)

    def row_of(node: str) -> str:
        node = node.split("/")[0]
        if node in rows:
            return rows[node]
        # A reorder is named "<parent>_<layout>_<layout>_<child>": charge the child.
        return next((rows[n] for n in names if node.endswith("_" + n)), OTHER)

    def run(x: torch.Tensor) -> dict:
        request.infer({0: x.numpy()})
        ms: dict[str, float] = defaultdict(float)
        kernels: dict[str, tuple[float, str]] = {}
        extra: dict[str, float] = defaultdict(float)  # reorders and pads, by row
        for info in request.get_profiling_info():
            t = (info.cpu_time if cpu_time else info.real_time).total_seconds() * 1e3
            row = row_of(info.node_name)
            ms[row] += t
            if info.node_type in ("Reorder", "Pad"):
                extra[row] += t
            elif t > kernels.get(row, (0.0, ""))[0]:
                kernels[row] = (t, info.exec_type)
        return {"ms": ms, "kernels": {r: k for r, (_, k) in kernels.items()}, "reorder_pad": extra}

    return run


# ------------------------------------------------------------------- report


@contextmanager
def best_of() -> Iterator[Callable[[dict[str, float]], dict[str, float]]]:
    best: dict[str, float] = {}

    def keep(ms: dict[str, float]) -> dict[str, float]:
        for row, t in ms.items():
            best[row] = min(best.get(row, float("inf")), t)
        return best

    yield keep


def report(title: str, i3d_ms: dict[str, float], ov: dict, modules: dict[str, torch.nn.Module]) -> None:
    ov_ms, kernels, reorder_pad = ov["ms"], ov["kernels"], ov["reorder_pad"]
    order = list(i3d_ms) + [r for r in ov_ms if r not in i3d_ms]
    print(f"\n## {title}\n")
    print(f"| {'layer':24} | i3d ms | OpenVINO ms | OV/i3d | OpenVINO kernel (of which reorder/pad ms) |")
    print(f"| {'-' * 24} | -----: | ----------: | -----: | ---------------------------------------- |")
    by_kind: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for row in order:
        a, b = i3d_ms.get(row, 0.0), ov_ms.get(row, 0.0)
        kind = kind_of(row, modules.get(row))
        by_kind[kind][0] += a
        by_kind[kind][1] += b - reorder_pad.get(row, 0.0)
        by_kind["OpenVINO reorder/pad"][1] += reorder_pad.get(row, 0.0)
        ratio = f"{b / a:5.2f}" if a > 0 else "    -"
        kernel = kernels.get(row, "") if max(a, b) >= BIG_MS else ""
        if reorder_pad.get(row, 0.0) >= 0.05:
            kernel += f" ({reorder_pad[row]:.1f})"
        print(f"| {row:24} | {a:6.1f} | {b:11.1f} | {ratio:>6} | {kernel:40} |")
    total_a, total_b = sum(i3d_ms.values()), sum(ov_ms.values())
    print(f"| {'total':24} | {total_a:6.1f} | {total_b:11.1f} | {total_b / total_a:6.2f} | {'':40} |")
    print(f"\n| {'kind':24} | i3d ms | OpenVINO ms | OV/i3d |")
    print(f"| {'-' * 24} | -----: | ----------: | -----: |")
    for kind, (a, b) in sorted(by_kind.items(), key=lambda kv: -max(kv[1])):
        ratio = f"{b / a:6.2f}" if a > 0 else "     -"
        print(f"| {kind:24} | {a:6.1f} | {b:11.1f} | {ratio} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_flags(parser, repeats=3, threads=2)
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="CPU time instead of the wall clock (needs --threads 1): steadier on a shared machine",
    )
    args = parser.parse_args()
    if args.cpu_time and args.threads != 1:
        parser.error("--cpu-time needs --threads 1 (i3d's layers are timed on the calling thread)")
    set_threads(args)
    from tests.conftest import randomize

    def model() -> InceptionI3d:
        return randomize(InceptionI3d(), seed=0)  # type: ignore[return-value]

    precisions = [("fp32", "f32")] + ([("bf16", "bf16")] if cpu_has_native_bf16() else [])
    x = torch.rand(1, 3, args.frames, args.size, args.size) * 2 - 1  # (B, C, T, H, W)
    print(
        f"clip 1x3x{args.frames}x{args.size}x{args.size}, {args.threads} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, best of {args.repeats} per row; i3d and OpenVINO alternate; "
        f"{'CPU time' if args.cpu_time else 'wall clock'}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = Path(tmp) / "i3d.onnx"
        export_model(model(), onnx_file, size=args.size)
        for ours, theirs in precisions:
            net = model()
            i3d_run = profile_i3d(net, ours, args.cpu_time)
            ov_run = profile_openvino(onnx_file, args.threads, theirs, args.cpu_time)
            i3d_run(x), ov_run(x)  # warm-up: caches, oneDNN's kernels
            with best_of() as keep_i3d, best_of() as keep_ov:
                ov_best: dict = {}
                for _ in range(args.repeats):
                    i3d_ms = keep_i3d(i3d_run(x))
                    out = ov_run(x)
                    ov_ms = keep_ov(out["ms"])
                    if not ov_best or sum(out["ms"].values()) < ov_best["total"]:
                        ov_best = {"kernels": out["kernels"], "reorder_pad": out["reorder_pad"]}
                        ov_best["total"] = sum(out["ms"].values())
            names = dict(net.named_modules())
            report(
                f"{ours}: i3d vs OpenVINO {theirs}",
                i3d_ms,
                {"ms": ov_ms, **ov_best},
                {row: names[row] for row in {*i3d_ms, *ov_ms} if row in names},
            )


if __name__ == "__main__":
    main()
