"""I3D on a GPU: the old port's computation against the fast path in every precision.

    benchmarks/gpu.sh                                   # what an NVIDIA machine runs: < 5 minutes
    python benchmarks/bench_gpu.py --device cpu --quick # a dry run of the same code on the CPU

Model: for each batch size (default 1, 4, 16 clips of 64x224x224), the
baseline (``port_baseline.PortI3D``: run-time ``F.pad``, contiguous layout,
separate BatchNorm) in fp32 with TF32 off, then :func:`i3d.runtime.prepare`'s
fast path in fp32 (TF32 off: exact), tf32, bf16 and fp16 (autocast), each
under :func:`i3d.runtime.precision_context`. Printed: frames/s, the ratio to
the baseline at the same batch, achieved TFLOP/s (convolution FLOPs of one
pass, counted on the baseline) against the GPU's dense peak for that
precision (from a table of common GPUs, or ``--peak-tflops``), the peak
memory allocated, and the largest difference of the logits from the
baseline's (relative to their largest value). Cases alternate within each
round; each keeps its best time.

Extraction (``--extract``): a synthetic video (``--video-minutes``, default
10, at 25 fps; a moving pattern written by ``bench_extract.synthetic_video``)
through ``python -m i3d extract`` end to end (decoding, preprocessing, the
network, the feature file) in each precision, with random weights; printed:
wall time and frames/s, against the model alone on the same number of
frames (from the first part's batch-1 rate). Then ``--stream both`` in fp32
(random flow weights too; TV-L1 by the torch engine on the same GPU), its
frames/s against RGB-only fp32 extraction of the same video (goal: >= 0.5).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from port_baseline import PortI3D, conv_flops  # noqa: E402

from i3d.fast import InferenceOptions  # noqa: E402
from i3d.model import InceptionI3d  # noqa: E402
from i3d.runtime import PRECISIONS, allow_tf32, precision_context, prepare  # noqa: E402

# Dense (no sparsity) peak TFLOP/s per precision, from the vendors' data
# sheets: fp32 on CUDA cores, the rest on tensor cores.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "H100 80GB HBM3": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},  # SXM
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0, "fp16": 362.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0},
    "A10": {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0},
    "RTX 4090": {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2},
    "V100": {"fp32": 15.7, "tf32": 15.7, "bf16": 15.7, "fp16": 125.0},  # no TF32/bf16 tensor cores
    "T4": {"fp32": 8.1, "tf32": 8.1, "bf16": 8.1, "fp16": 65.0},
}
VIDEO_FPS = 25
SECONDS_PER_MINUTE = 60
SOURCE_SHORT_SIDE = 320  # larger than the 256-pixel resize, as real videos are


def peak_for(device: torch.device, override: float | None) -> dict[str, float] | None:
    if override is not None:
        return dict.fromkeys(PRECISIONS, override)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAK_TFLOPS.items():
        if key in name:
            return peaks
    return None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compiled(state: dict, device: torch.device, precision: str) -> Callable[[torch.Tensor], torch.Tensor] | str:
    """The network under ``torch.compile`` (inductor, with freezing: it folds
    BatchNorm and fuses the ReLUs itself), on the reference path that it
    traces; or why it cannot run here. Compilation happens in the warm-up
    call of each batch size."""
    try:
        import torch._dynamo
        import torch._inductor.config
    except ImportError as error:
        return f"no inductor in this PyTorch ({error})"
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile does not support this Python"
    torch._inductor.config.freezing = True
    model = InceptionI3d()
    model.load_state_dict(state)
    prepare(model, device, precision)  # type: ignore[arg-type]
    model.configure_inference(InferenceOptions.off())  # inductor does the folding and fusing
    compiled_model = torch.compile(model, dynamic=False)  # one graph per batch size, each specialised

    def run(x: torch.Tensor) -> torch.Tensor:
        with precision_context(device, precision):  # type: ignore[arg-type]
            return compiled_model(x)

    return run


def model_table(args: argparse.Namespace, device: torch.device) -> float:
    """Prints the model table; returns the fast fp32 path's frames/s at batch 1."""
    torch.manual_seed(0)
    state = InceptionI3d().state_dict()
    port = PortI3D().to(device).eval()
    port.load_state_dict(state)

    def fast(precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
        model = InceptionI3d()
        model.load_state_dict(state)
        prepare(model, device, precision)  # type: ignore[arg-type]

        def run(x: torch.Tensor) -> torch.Tensor:
            with precision_context(device, precision):  # type: ignore[arg-type]
                return model(x)

        return run

    def baseline(x: torch.Tensor) -> torch.Tensor:
        with allow_tf32(device, "fp32"), torch.inference_mode():
            return port(x)

    precisions = [p for p in args.precisions.split(",") if device.type == "cuda" or p in ("fp32", "bf16")]
    cases: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"old port, fp32": baseline}
    cases.update({f"fast, {p}": fast(p) for p in precisions})
    if args.compile_precision:
        run_compiled = compiled(state, device, args.compile_precision)
        if isinstance(run_compiled, str):
            print(f"compiled, {args.compile_precision}: skipped, {run_compiled}")
        else:
            cases[f"compiled, {args.compile_precision}"] = run_compiled
    peaks = peak_for(device, args.peak_tflops)
    one_clip = torch.rand(1, 3, args.frames, args.size, args.size) * 2 - 1
    flops_per_clip = conv_flops(port.cpu(), one_clip)
    port.to(device)
    print(
        f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else device}, "
        f"clips of 3x{args.frames}x{args.size}x{args.size}, {flops_per_clip / 1e9:.0f} GFLOP per clip, "
        f"best of {args.repeats}"
    )
    print("| batch | path           | frames/s | vs baseline | TFLOP/s | of peak | peak memory | max rel. diff |")
    print("| ----: | -------------- | -------: | ----------: | ------: | ------: | ----------: | ------------: |")
    batch1_fp32 = 0.0
    for batch in (int(b) for b in args.batches.split(",")):
        x = (torch.rand(batch, 3, args.frames, args.size, args.size) * 2 - 1).to(device)
        reference = baseline(x).float()
        best, memory, error = {}, {}, {}
        for name, fn in list(cases.items()):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            try:
                y = fn(x).float()  # warm-up: cuDNN's algorithm search, folded weights, compilation
            except Exception as error:  # noqa: BLE001 - only the compiled case may fail: say why, go on
                if not name.startswith("compiled"):
                    raise
                print(f"{name}: skipped, torch.compile failed: {type(error).__name__}: {str(error).splitlines()[0]}")
                del cases[name]
                continue
            synchronize(device)
            memory[name] = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
            error[name] = ((y - reference).abs().max() / reference.abs().max()).item()
            best[name] = float("inf")
        for _ in range(args.repeats):
            for name, fn in cases.items():
                synchronize(device)
                start = time.perf_counter()
                fn(x)
                synchronize(device)
                best[name] = min(best[name], time.perf_counter() - start)
        base = best["old port, fp32"]
        for name, seconds in best.items():
            precision = name.rsplit(" ", 1)[-1]
            tflops = flops_per_clip * batch / seconds / 1e12
            of_peak = f"{tflops / peaks[precision]:6.1%}" if peaks else "     ?"
            print(
                f"| {batch:5} | {name:14} | {batch * args.frames / seconds:8.1f} | {base / seconds:10.2f}x "
                f"| {tflops:7.2f} | {of_peak:>7} | {memory[name] / 2**30:7.2f} GiB | {error[name]:13.1e} |"
            )
            if batch == 1 and name == "fast, fp32":
                batch1_fp32 = args.frames / seconds
    return batch1_fp32


def extract_table(args: argparse.Namespace, device: torch.device, model_fps: float) -> None:
    from bench_extract import synthetic_video

    from i3d.weights import save_state_dict

    minutes = args.video_minutes
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.cache_dir) if args.cache_dir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        video = synthetic_video(folder, minutes * SECONDS_PER_MINUTE, VIDEO_FPS, SOURCE_SHORT_SIDE)
        print(f"synthetic {minutes:g}-minute video at {VIDEO_FPS} fps: {time.perf_counter() - start:.0f} s to write")
        torch.manual_seed(0)
        weights = save_state_dict(InceptionI3d().state_dict(), Path(tmp) / "random_rgb.safetensors")
        frames = round(minutes * SECONDS_PER_MINUTE * VIDEO_FPS)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
        print("| precision | wall s | frames/s | vs the model alone (fp32, batch 1) |")
        print("| --------- | -----: | -------: | ---------------------------------: |")
        precisions = [p for p in args.extract_precisions.split(",") if device.type == "cuda" or p == "fp32"]
        rgb_seconds = None
        for precision in precisions:
            out = Path(tmp) / f"out_{precision}"
            command = [sys.executable, "-m", "i3d", "extract", str(video), "--out", str(out)]
            command += ["--weights", str(weights), "--device", str(device), "--precision", precision]
            start = time.perf_counter()
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - start
            ratio = f"{frames / seconds / model_fps:.2f}" if model_fps else "?"
            print(f"| {precision:9} | {seconds:6.1f} | {frames / seconds:8.1f} | {ratio:>34} |")
            if precision == "fp32":
                rgb_seconds = seconds
        flow_weights = save_state_dict(InceptionI3d(in_channels=2).state_dict(), Path(tmp) / "random_flow.safetensors")
        command = [sys.executable, "-m", "i3d", "extract", str(video), "--out", str(Path(tmp) / "out_both")]
        command += ["--stream", "both", "--weights", str(weights), "--flow-weights", str(flow_weights)]
        command += ["--device", str(device), "--precision", "fp32", "--flow-engine", "torch"]
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        print(
            f"two streams (rgb + TV-L1 flow), fp32: {seconds:.1f} s, {frames / seconds:.1f} frames/s; "
            + (f"{rgb_seconds / seconds:.2f} of RGB-only fp32 extraction (goal >= 0.5)" if rgb_seconds else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a dry run (e.g. on the CPU)")
    parser.add_argument("--frames", type=int, default=64, help="frames per clip (default: 64)")
    parser.add_argument("--size", type=int, default=224, help="frame side (default: 224)")
    parser.add_argument("--batches", default="1,4,16", help="batch sizes (default: 1,4,16)")
    parser.add_argument("--precisions", default="fp32,tf32,bf16,fp16", help="fast-path precisions")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds; each case keeps its best (default: 5)")
    parser.add_argument(
        "--compile-precision", default="bf16", help="precision of the torch.compile case ('' for none; default: bf16)"
    )
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's peak, if not in the table")
    parser.add_argument("--extract", action="store_true", help="also time `i3d extract` on a synthetic video")
    parser.add_argument("--extract-precisions", default="fp32,bf16", help="precisions of the extraction runs")
    parser.add_argument("--video-minutes", type=float, default=10.0, help="length of that video (default: 10)")
    parser.add_argument("--cache-dir", default=None, help="keep the synthetic video here between runs")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.size, args.batches, args.repeats = 9, 32, "1,2", 1
        args.video_minutes = min(args.video_minutes, 0.05)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device; use --device cpu --quick for a dry run")
    model_fps = model_table(args, device)
    if args.extract:
        extract_table(args, device, model_fps)


if __name__ == "__main__":
    main()
