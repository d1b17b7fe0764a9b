"""How far each precision moves I3D's outputs from exact fp32: the table users choose from.

    python benchmarks/precision_accuracy.py                          # CPU: fp32, bf16; calibrated random weights
    python benchmarks/precision_accuracy.py --weights rgb_imagenet   # a registry name or a checkpoint file
    python benchmarks/precision_accuracy.py --device cuda --clips 32 # GPU: fp32, tf32, bf16, fp16

Every clip runs through :func:`i3d.runtime.prepare` in fp32 (the exact
default) and in each other precision the device offers; the table gives,
against fp32: the share of clips whose top-1 class (logits averaged over
time) agrees, the largest absolute logit difference (and the largest logit,
for scale), and the smallest and mean cosine similarity of the pooled
Mixed_5c features (one 1024-vector per clip and time step). The first row
compares the fast fp32 path with the model's reference path (fast path off).

Inputs are random clips in [-1, 1]; with random weights (the default:
``tests/conftest.py``'s ``randomize``, activations near unit scale) top-1
agreement says little about real videos; rerun with ``--weights`` on real
weights for the README's numbers. Nothing is timed.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from i3d.fast import InferenceOptions  # noqa: E402
from i3d.model import InceptionI3d  # noqa: E402
from i3d.runtime import precision_context, prepare  # noqa: E402

CPU_PRECISIONS = ("bf16",)
CUDA_PRECISIONS = ("tf32", "bf16", "fp16")


def load_model(spec: str | None) -> InceptionI3d:
    if spec is None:
        from tests.conftest import randomize

        return randomize(InceptionI3d(), seed=0)
    from i3d.weights import inception_i3d

    return inception_i3d(weights=spec, progress=False)


def outputs(model: InceptionI3d, clips: torch.Tensor, device: torch.device, precision: str, batch: int):
    """Pooled features ``(N * T', 1024)`` and time-averaged logits ``(N, classes)``, float32 on the CPU."""
    pooled, logits = [], []
    for start in range(0, clips.shape[0], batch):
        x = clips[start : start + batch].to(device)  # (B, C, T, H, W)
        with precision_context(device, precision):  # type: ignore[arg-type]
            p = model.extract_features(x)  # (B, 1024, T', 1, 1)
            y = model.classify(p)  # (B, classes, T')
        pooled.append(p.float().mean(dim=(3, 4)).movedim(2, 1).flatten(0, 1).cpu())
        logits.append(y.float().mean(dim=2).cpu())
    return torch.cat(pooled), torch.cat(logits)


def compare(name: str, got, ref) -> str:
    (p, y), (p0, y0) = got, ref
    agree = (y.argmax(1) == y0.argmax(1)).float().mean().item()
    cos = F.cosine_similarity(p.double(), p0.double(), dim=1)
    diff = (y - y0).abs().max().item()
    return (
        f"| {name:28} | {agree * 100:10.1f}% | {diff:14.2e} | {y0.abs().max().item():9.2f} "
        f"| {cos.min().item():10.6f} | {cos.mean().item():11.6f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="registry name or checkpoint file (default: random)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--clips", type=int, default=8, help="random clips (default: 8)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (default: 16)")
    parser.add_argument("--size", type=int, default=224, help="frame side (default: 224)")
    parser.add_argument("--batch", type=int, default=1, help="clips per network call (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random clips (default: 0)")
    args = parser.parse_args()

    device = torch.device(args.device)
    base = load_model(args.weights)
    g = torch.Generator().manual_seed(args.seed)
    clips = torch.rand((args.clips, base.in_channels, args.frames, args.size, args.size), generator=g) * 2 - 1

    fp32 = prepare(copy.deepcopy(base), device, "fp32")
    ref = outputs(fp32, clips, device, "fp32", args.batch)  # type: ignore[arg-type]
    rows = []
    plain = prepare(copy.deepcopy(base), device, "fp32", options=InferenceOptions.off())
    rows.append(compare("fp32, fast path off", outputs(plain, clips, device, "fp32", args.batch), ref))  # type: ignore[arg-type]
    for precision in CUDA_PRECISIONS if device.type == "cuda" else CPU_PRECISIONS:
        model = prepare(copy.deepcopy(base), device, precision)  # type: ignore[arg-type]
        rows.append(compare(precision, outputs(model, clips, device, precision, args.batch), ref))  # type: ignore[arg-type]

    weights = args.weights or "calibrated random weights"
    print(f"{weights}; {args.clips} random clips of {args.frames}x{args.size}x{args.size}; {device}; against fp32")
    print(f"| {'precision':28} | top-1 agree | max logit diff | max logit | min cosine | mean cosine |")
    print(f"| {'-' * 28} | ----------: | -------------: | --------: | ---------: | ----------: |")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
