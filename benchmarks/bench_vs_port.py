"""The fast inference path against the old port's computation, one optimisation at a time.

    python benchmarks/bench_vs_port.py                      # 1x3x64x224x224, the issue's clip
    python benchmarks/bench_vs_port.py --frames 16 --size 112 --repeats 2   # a quick look

Prints, from one run on one machine: the baseline (``port_baseline.PortI3D``:
run-time ``F.pad``, contiguous layout, separate BatchNorm, fp32), the
package's model with the fast path off, each optimisation of
:class:`i3d.fast.InferenceOptions` alone, all of them but one, all of them
(what :func:`i3d.runtime.prepare` gives in fp32), and the float32
matrix-multiply ceiling of the same cores, each with frames/s, GFLOP/s
(convolution and matrix-multiply FLOPs of one pass, counted on the
baseline) and the ratio to the baseline. Every case runs once per round;
rounds alternate the cases (ABAB...) and each keeps its best time, since the
machine may be shared. Every fp32 case is checked against the baseline's
output (max difference relative to its largest value), since a fast wrong
answer would not count.

The process's heap setting (``keep_freed_memory``, :mod:`i3d.heap`) is set
first, for every case, the port's included: it is process-wide, so it cannot
be timed one case at a time here (``bench_runtimes.py`` shows the package
with it against other runtimes, which plan their memory themselves).

Weights: calibrated random ones (``tests/conftest.py``'s ``randomize``:
activations near unit scale, as real weights give), or ``--weights FILE``
(any state dict file ``i3d.weights.load_state_dict_file`` reads). Speed
does not depend on the values, as long as they are not denormal.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from port_baseline import FLOPS_PER_MAC, PortI3D, conv_flops  # noqa: E402

from benchmarks.clip_flags import add_clip_flags, set_threads  # noqa: E402
from i3d import heap  # noqa: E402
from i3d.fast import InferenceOptions  # noqa: E402
from i3d.model import InceptionI3d  # noqa: E402
from i3d.runtime import cpu_has_native_bf16, precision_context, prepare  # noqa: E402

# Square matrices of this side keep a CPU's matrix multiply near its peak.
CEILING_SIDE = 2048
# Per layer: the heap setting is process-wide, set once in main().
OPTIMISATIONS = tuple(f.name for f in dataclasses.fields(InferenceOptions) if f.name != "keep_freed_memory")


def load_weights(spec: str | None) -> dict[str, torch.Tensor]:
    if spec is None:
        from tests.conftest import randomize

        return randomize(InceptionI3d(), seed=0).state_dict()
    from i3d.weights import load_state_dict_file

    return load_state_dict_file(spec)


def matmul_ceiling(repeats: int) -> float:
    """Best float32 GFLOP/s of a square matrix multiply on these cores."""
    a, b = torch.randn(CEILING_SIDE, CEILING_SIDE), torch.randn(CEILING_SIDE, CEILING_SIDE)
    flops = FLOPS_PER_MAC * CEILING_SIDE**3
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def cases(
    state: dict[str, torch.Tensor], args: argparse.Namespace
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Name -> a function of the input, in the order they print."""
    cpu = torch.device("cpu")
    port = PortI3D().eval()
    port.load_state_dict(state, strict=True)
    out: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"old port (baseline)": port}

    def package(options: InferenceOptions, precision: str = "fp32") -> Callable[[torch.Tensor], torch.Tensor]:
        model = InceptionI3d()
        model.load_state_dict(state, strict=True)
        prepare(model, cpu, precision, options=options)  # type: ignore[arg-type]

        def run(x: torch.Tensor) -> torch.Tensor:
            with precision_context(cpu, precision):  # type: ignore[arg-type]
                return model(x).float()

        return run

    none = InferenceOptions.off()
    out["package, fast path off"] = package(none)
    if not args.summary:
        for name in OPTIMISATIONS:
            if name == "fuse_relu":
                continue  # it needs the folded weights: see "all but"
            out[f"only {name}"] = package(dataclasses.replace(none, **{name: True}))
        for name in OPTIMISATIONS:
            out[f"all but {name}"] = package(dataclasses.replace(InferenceOptions(), **{name: False}))
    out["all (prepare, fp32)"] = package(InferenceOptions())
    if args.bf16:
        out["all, bf16 autocast"] = package(InferenceOptions(), "bf16")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_flags(parser, repeats=3, threads=None)
    parser.add_argument("--batch", type=int, default=1, help="clips per call (default: 1)")
    parser.add_argument("--weights", default=None, help="a state dict file (default: calibrated random weights)")
    parser.add_argument("--summary", action="store_true", help="only the baseline, fast path off and all")
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast (slow without native bf16)")
    args = parser.parse_args()
    set_threads(args)
    heap.keep_freed_memory()  # process-wide: the same allocator for every case

    state = load_weights(args.weights)
    x = torch.rand(args.batch, 3, args.frames, args.size, args.size) * 2 - 1  # (B, C, T, H, W)
    runs = cases(state, args)
    flops = conv_flops(runs["old port (baseline)"], x)  # type: ignore[arg-type]
    with torch.inference_mode():
        reference = runs["old port (baseline)"](x)
        errors = {name: ((fn(x) - reference).abs().max() / reference.abs().max()).item() for name, fn in runs.items()}
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.repeats):
        for name, fn in runs.items():
            with torch.inference_mode():
                start = time.perf_counter()
                fn(x)
                best[name] = min(best[name], time.perf_counter() - start)
    ceiling = matmul_ceiling(args.repeats)

    frames = args.batch * args.frames
    base = best["old port (baseline)"]
    print(
        f"clip {args.batch}x3x{args.frames}x{args.size}x{args.size}, {torch.get_num_threads()} threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_native_bf16()}, "
        f"{flops / 1e9:.1f} GFLOP per pass, best of {args.repeats}"
    )
    print(f"| {'path':26} | frames/s | GFLOP/s | vs baseline | max rel. diff |")
    print(f"| {'-' * 26} | -------: | ------: | ----------: | ------------: |")
    for name, seconds in best.items():
        print(
            f"| {name:26} | {frames / seconds:8.1f} | {flops / seconds / 1e9:7.1f} | {base / seconds:10.2f}x "
            f"| {errors[name]:13.1e} |"
        )
    print(f"| {'fp32 matmul ceiling':26} | {'':8} | {ceiling:7.1f} | {'':11} | {'':13} |")


if __name__ == "__main__":
    main()
