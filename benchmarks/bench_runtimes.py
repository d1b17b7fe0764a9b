"""i3d against ONNX Runtime and OpenVINO on the same network, in one run.

    python benchmarks/bench_runtimes.py                 # 1x3x64x224x224, 2 threads, the issue's clip
    python benchmarks/bench_runtimes.py --frames 16 --repeats 2   # a quick look

The network is exported once with ``i3d.export.export_model`` (ONNX,
logits) and that file runs in ONNX Runtime (fp32) and OpenVINO (fp32, and
bf16 where the CPU has native bf16), each held to the same number of
threads as torch; ``i3d --backend openvino`` rows run the clip through
i3d's own code path for it (``i3d.chunked.run_clips(..., backend="openvino")``:
the export form converted by :mod:`i3d.openvino`, compiled once, cached). Prints frames/s of each and the ratio to i3d's fp32 path,
and each output's largest difference from i3d fp32 relative to its largest
value. Every case runs once per round; rounds alternate the cases
(ABAB...) and each keeps its best time, since the machine may be shared:
only ratios from one run mean anything. A runtime that is not installed is
left out and said so (``pip install onnxruntime openvino``).

i3d's cases are set up by :func:`i3d.runtime.prepare`, which keeps freed
memory in the process (:mod:`i3d.heap`, process-wide, so the other runtimes
run under it too; they plan their own memory and do not depend on it).

Weights: calibrated random ones (``tests/conftest.py``'s ``randomize``), or
``--weights FILE``; speed does not depend on the values.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.clip_flags import add_clip_flags, set_threads  # noqa: E402
from i3d.chunked import LOGITS, run_clips  # noqa: E402
from i3d.export import export_model  # noqa: E402
from i3d.model import InceptionI3d  # noqa: E402
from i3d.runtime import cpu_has_native_bf16, precision_context, prepare  # noqa: E402

Run = Callable[[torch.Tensor], np.ndarray]
BASELINE = "i3d fp32"


def load_model(spec: str | None) -> InceptionI3d:
    if spec is None:
        from tests.conftest import randomize

        return randomize(InceptionI3d(), seed=0)  # type: ignore[return-value]
    from i3d.weights import inception_i3d

    return inception_i3d(weights=spec)


def i3d_case(model: InceptionI3d, precision: str) -> Run:
    cpu = torch.device("cpu")
    prepare(model, cpu, precision)  # type: ignore[arg-type]

    def run(x: torch.Tensor) -> np.ndarray:
        with precision_context(cpu, precision):  # type: ignore[arg-type]
            return model(x).float().numpy()

    return run


def backend_case(model: InceptionI3d, precision: str) -> Run:
    """i3d's ``--backend openvino`` path: the graph converts on the first call (the warm-up)."""
    prepare(model, torch.device("cpu"), precision)  # type: ignore[arg-type]

    def run(x: torch.Tensor) -> np.ndarray:
        (y,) = run_clips(model, [x], LOGITS, precision=precision, backend="openvino")  # type: ignore[arg-type]
        return y.float().numpy()

    return run


def onnxruntime_case(onnx_file: Path, threads: int) -> Run:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"video": x.numpy()})[0]


def openvino_case(onnx_file: Path, threads: int, precision: str) -> Run:
    import openvino

    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    compiled = openvino.Core().compile_model(openvino.convert_model(onnx_file), "CPU", config)
    return lambda x: compiled(x.numpy())[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_flags(parser, repeats=3, threads=2)
    parser.add_argument("--weights", default=None, help="weights (default: calibrated random weights)")
    args = parser.parse_args()
    set_threads(args)

    model = load_model(args.weights)
    bf16 = cpu_has_native_bf16()
    runs: dict[str, Run] = {BASELINE: i3d_case(model, "fp32")}
    if bf16:
        runs["i3d bf16"] = i3d_case(load_model(args.weights), "bf16")
    missing = [name for name in ("onnxruntime", "onnxscript", "openvino") if importlib.util.find_spec(name) is None]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = Path(tmp) / "i3d.onnx"
        if "onnxscript" not in missing:
            export_model(load_model(args.weights), onnx_file, size=args.size)
            if "onnxruntime" not in missing:
                runs["onnxruntime fp32"] = onnxruntime_case(onnx_file, args.threads)
        if "openvino" not in missing:
            runs["i3d --backend openvino fp32"] = backend_case(load_model(args.weights), "fp32")
            if bf16:
                runs["i3d --backend openvino bf16"] = backend_case(load_model(args.weights), "bf16")
            if "onnxscript" not in missing:
                runs["openvino fp32"] = openvino_case(onnx_file, args.threads, "f32")
                if bf16:
                    runs["openvino bf16"] = openvino_case(onnx_file, args.threads, "bf16")

        x = torch.rand(1, 3, args.frames, args.size, args.size) * 2 - 1  # (B, C, T, H, W)
        with torch.inference_mode():
            outputs = {name: run(x) for name, run in runs.items()}  # also the warm-up
            best = dict.fromkeys(runs, float("inf"))
            for _ in range(args.repeats):
                for name, run in runs.items():
                    start = time.perf_counter()
                    run(x)
                    best[name] = min(best[name], time.perf_counter() - start)

    reference = outputs[BASELINE]
    print(
        f"clip 1x3x{args.frames}x{args.size}x{args.size}, {args.threads} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {bf16}, best of {args.repeats}; "
        f"not installed: {', '.join(missing) or 'none'}"
    )
    print(f"| {'path':27} | frames/s | vs {BASELINE} | max rel. diff from {BASELINE} |")
    print(f"| {'-' * 27} | -------: | -----------: | ---------------------------: |")
    for name, seconds in best.items():
        diff = np.abs(outputs[name] - reference).max() / np.abs(reference).max()
        print(f"| {name:27} | {args.frames / seconds:8.1f} | {best[BASELINE] / seconds:11.2f}x | {diff:28.1e} |")


if __name__ == "__main__":
    main()
