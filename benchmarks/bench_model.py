"""Model throughput: one pass against chunked streaming and other precisions.

Prints frames/s of each configuration and its ratio to the baseline, one
fp32 pass over the whole clip, timed in the same run (the machine may be
shared and noisy: compare ratios, not absolute numbers across runs).

    python benchmarks/bench_model.py                      # CPU, small default
    python benchmarks/bench_model.py --device cuda --frames 256 --size 224 --precisions fp32,tf32,bf16,fp16
"""

from __future__ import annotations

import argparse
import time

import torch

from i3d.model import InceptionI3d
from i3d.runtime import precision_context, prepare
from i3d.streaming import run_chunks


def timed(fn, device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` runs after one warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--frames", type=int, default=64, help="clip length in frames (default: 64)")
    parser.add_argument("--size", type=int, default=112, help="frame side in pixels (default: 112; 224 is Kinetics)")
    parser.add_argument("--chunks", default="16,32", help="chunk sizes for streaming, comma-separated")
    parser.add_argument("--precisions", default="fp32", help="precisions to time besides the baseline")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per configuration; the best counts")
    args = parser.parse_args()

    device = torch.device(args.device)
    x = torch.rand(1, 3, args.frames, args.size, args.size, device=device) * 2 - 1
    rows = []

    def one_pass(model):
        return lambda: model.extract_features(x)

    def streamed(model, size):
        return lambda: list(
            run_chunks(model, (x[:, :, i : i + size] for i in range(0, args.frames, size)), args.frames)
        )

    base_model = prepare(InceptionI3d(), device, "fp32")
    with precision_context(device, "fp32"):
        baseline = timed(one_pass(base_model), device, args.repeats)
    rows.append(("one pass", "fp32", baseline))
    for size in (int(c) for c in args.chunks.split(",")):
        with precision_context(device, "fp32"):
            rows.append((f"chunks of {size}", "fp32", timed(streamed(base_model, size), device, args.repeats)))
    for precision in args.precisions.split(","):
        if precision == "fp32":
            continue
        model = prepare(InceptionI3d(), device, precision)  # type: ignore[arg-type]
        with precision_context(device, precision):  # type: ignore[arg-type]
            rows.append(("one pass", precision, timed(one_pass(model), device, args.repeats)))

    print(f"device {device}, clip {args.frames} x {args.size} x {args.size}, best of {args.repeats}")
    print(f"{'configuration':18} {'precision':9} {'frames/s':>10} {'vs baseline':>12}")
    for name, precision, seconds in rows:
        print(f"{name:18} {precision:9} {args.frames / seconds:10.1f} {baseline / seconds:11.2f}x")


if __name__ == "__main__":
    main()
