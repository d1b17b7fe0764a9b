"""The network's max pools at once against a slab of frames at a time.

    python benchmarks/bench_pools.py                          # 1x3x64x224x224, 2 threads, fp32 (and bf16)
    python benchmarks/bench_pools.py --fractions 2,4,8,16 --repeats 20

Each max pool's real input (the ReLU outputs a forward pass of the prepared
model hands it, captured once) is pooled by :func:`i3d.ops.max_pool_strided`
all at once (the baseline) and in slabs of ``1/F`` of the last-level cache
for each ``F`` of ``--fractions`` (the package uses
:data:`i3d.ops.SLAB_CACHE_FRACTION`), checked equal, and timed: every case
runs once per round, each round leads with the next case (whichever runs
first finds less of the input in the cache), and each case keeps its best
time. Pools of at most two slabs run whole in the package either way; here
every case is cut, to show where cutting stops paying (a slab larger than
the pool's input is the whole pool). The machine may be shared: compare
ratios within one run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.clip_flags import add_clip_flags, set_threads  # noqa: E402
from i3d.layers import MaxPool3dSame, Span  # noqa: E402
from i3d.model import InceptionI3d  # noqa: E402
from i3d.ops import SLAB_CACHE_FRACTION, last_level_cache_bytes, max_pool_strided  # noqa: E402
from i3d.runtime import cpu_has_native_bf16, precision_context, prepare  # noqa: E402


def pool_inputs(precision: str, frames: int, size: int) -> dict[str, tuple[MaxPool3dSame, torch.Tensor, Span]]:
    """Every max pool of the network, with the input and span a forward pass hands it."""
    cpu = torch.device("cpu")
    model = prepare(InceptionI3d(), cpu, precision)  # type: ignore[arg-type]
    captured: dict[str, tuple[MaxPool3dSame, torch.Tensor, Span]] = {}

    def recording(name: str, pool: MaxPool3dSame):  # type: ignore[no-untyped-def]
        forward_span = pool.forward_span

        def run(x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span]:
            captured[name] = (pool, x.clone(memory_format=torch.preserve_format), span)
            return forward_span(x, span)

        return run

    for name, module in model.named_modules():
        if isinstance(module, MaxPool3dSame):
            module.forward_span = recording(name, module)  # type: ignore[method-assign]
    x = torch.rand(1, 3, frames, size, size) * 2 - 1  # (B, C, T, H, W)
    with torch.inference_mode(), precision_context(cpu, precision):  # type: ignore[arg-type]
        model(x)
    return captured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_flags(parser, repeats=10, threads=2)
    parser.add_argument(
        "--fractions",
        default=f"{SLAB_CACHE_FRACTION // 2},{SLAB_CACHE_FRACTION},{SLAB_CACHE_FRACTION * 2}",
        help="slab sizes as fractions of the last-level cache (default: the package's, and slabs twice and half as large)",
    )
    args = parser.parse_args()
    set_threads(args)
    fractions = [int(f) for f in args.fractions.split(",")]
    cache = last_level_cache_bytes()
    precisions = ["fp32"] + (["bf16"] if cpu_has_native_bf16() else [])
    print(
        f"clip 1x3x{args.frames}x{args.size}x{args.size}, {args.threads} threads, last-level cache "
        f"{cache / 2**20:.0f} MiB, best of {args.repeats}; ms per pool, ratio to the whole pool"
    )
    for precision in precisions:
        pools = pool_inputs(precision, args.frames, args.size)
        cases = ["whole"] + [f"1/{f}" for f in fractions]
        print(f"\n{precision}\n| pool | MiB | " + " | ".join(cases) + " |")
        print("| --- | --: | " + " | ".join("--:" for _ in cases) + " |")
        totals = dict.fromkeys(cases, 0.0)
        for name, (pool, x, span) in pools.items():
            x, pads, _ = pool.window(x, span)
            frame_bytes = x[:, :, 0].numel() * x.element_size()
            slabs = {"whole": None} | {f"1/{f}": max(1, cache // f // frame_bytes) for f in fractions}
            best = dict.fromkeys(cases, float("inf"))
            with torch.inference_mode():
                expected = max_pool_strided(x, pool.kernel, pool.stride, pads, nonnegative=True)
                for case in cases:
                    got = max_pool_strided(x, pool.kernel, pool.stride, pads, nonnegative=True, slab_frames=slabs[case])
                    assert torch.equal(got, expected), (name, case)
                for r in range(args.repeats):
                    for case in cases[r % len(cases) :] + cases[: r % len(cases)]:  # each case leads in turn
                        start = time.perf_counter()
                        max_pool_strided(x, pool.kernel, pool.stride, pads, nonnegative=True, slab_frames=slabs[case])
                        best[case] = min(best[case], time.perf_counter() - start)
            for case in cases:
                totals[case] += best[case]
            cells = " | ".join(f"{best[c] * 1e3:.2f} ({best['whole'] / best[c]:.2f}x)" for c in cases)
            print(f"| {name} | {x.numel() * x.element_size() / 2**20:.0f} | {cells} |")
        cells = " | ".join(f"{totals[c] * 1e3:.1f} ({totals['whole'] / totals[c]:.2f}x)" for c in cases)
        print(f"| all | | {cells} |")


if __name__ == "__main__":
    main()
