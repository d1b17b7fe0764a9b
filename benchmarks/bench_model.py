"""Model throughput: one pass against chunked streaming, other precisions and batches of short clips.

Prints frames/s of each configuration and its ratio to the baseline, one
fp32 pass of the prepared (fast) model over the whole clip, timed in the same
run: every configuration runs once per round, rounds alternate them, each
keeps its best time (the machine may be shared and noisy: compare ratios,
not absolute numbers across runs).

    python benchmarks/bench_model.py                      # CPU, small default
    python benchmarks/bench_model.py --frames 256 --size 224 --chunks 16,128   # streaming at the default chunk
    python benchmarks/bench_model.py --device cuda --frames 256 --size 224 --precisions fp32,tf32,bf16,fp16
    python benchmarks/bench_model.py --clips 8 --clip-frames 250 --batches 1,4,8   # ten-second videos at 25 fps

Short clips (``--clips N``): N clips of ``--clip-frames`` each through the
network one at a time and in batches (``--batches``), against one long
video of the same N x ``--clip-frames`` frames streamed in chunks of
``DEFAULT_CHUNK_FRAMES``: how much batching short videos gains.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from i3d.chunked import DEFAULT_CHUNK_FRAMES, run_chunks
from i3d.model import InceptionI3d
from i3d.runtime import precision_context, prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--frames", type=int, default=64, help="clip length in frames (default: 64)")
    parser.add_argument("--size", type=int, default=112, help="frame side in pixels (default: 112; 224 is Kinetics)")
    parser.add_argument(
        "--chunks", default=f"16,{DEFAULT_CHUNK_FRAMES}", help="chunk sizes for streaming, comma-separated"
    )
    parser.add_argument("--precisions", default="fp32", help="precisions to time besides the baseline")
    parser.add_argument("--clips", type=int, default=0, help="short clips to time one by one and batched (default: 0)")
    parser.add_argument("--clip-frames", type=int, default=32, help="frames per short clip (default: 32)")
    parser.add_argument("--batches", default="1,4,8", help="batch sizes for the short clips (default: 1,4,8)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; each configuration keeps its best")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    x = torch.rand(1, 3, args.frames, args.size, args.size, device=device) * 2 - 1  # (B, C, T, H, W)
    models = {p: prepare(InceptionI3d(), device, p) for p in ["fp32", *args.precisions.split(",")]}  # type: ignore[arg-type]
    cases: dict[str, tuple[str, int, Callable[[], object]]] = {}  # name -> (precision, frames, run)

    def streamed(model: InceptionI3d, video: torch.Tensor, size: int) -> Callable[[], object]:
        total = video.shape[2]
        return lambda: list(run_chunks(model, (video[:, :, i : i + size] for i in range(0, total, size)), total))

    fp32 = models["fp32"]
    cases["one pass"] = ("fp32", args.frames, lambda: fp32.extract_features(x))
    for size in (int(c) for c in args.chunks.split(",")):
        cases[f"chunks of {size}"] = ("fp32", args.frames, streamed(fp32, x, size))  # type: ignore[arg-type]
    for precision, model in models.items():
        if precision != "fp32":
            cases[f"one pass {precision}"] = (precision, args.frames, lambda m=model: m.extract_features(x))
    if args.clips:
        clips = torch.rand(args.clips, 3, args.clip_frames, args.size, args.size, device=device) * 2 - 1
        total = args.clips * args.clip_frames
        long = clips.movedim(0, 2).reshape(1, 3, total, args.size, args.size)  # the clips end to end
        cases[f"1 video of {total} frames"] = ("fp32", total, streamed(fp32, long, DEFAULT_CHUNK_FRAMES))  # type: ignore[arg-type]
        for batch in (int(b) for b in args.batches.split(",")):

            def batched(b: int = batch) -> None:
                for start in range(0, args.clips, b):
                    fp32.extract_features(clips[start : start + b])

            cases[f"{args.clip_frames}-frame clips, batch {batch}"] = ("fp32", total, batched)

    best = dict.fromkeys(cases, float("inf"))
    for round_ in range(args.repeats + 1):  # round 0 warms up
        for name, (precision, _, run) in cases.items():
            with precision_context(device, precision):  # type: ignore[arg-type]
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                run()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            if round_:
                best[name] = min(best[name], time.perf_counter() - start)

    base = args.frames / best["one pass"]
    print(f"device {device}, clip {args.frames} x {args.size} x {args.size}, best of {args.repeats}")
    print(f"| {'configuration':28} | {'precision':9} | {'frames/s':>8} | vs one pass |")
    print(f"| {'-' * 28} | {'-' * 9} | -------: | ----------: |")
    for name, (precision, frames, _) in cases.items():
        fps = frames / best[name]
        print(f"| {name:28} | {precision:9} | {fps:8.1f} | {fps / base:10.2f}x |")


if __name__ == "__main__":
    main()
