"""The baseline of the speed benchmarks: I3D as the old PyTorch port computes it.

Written here from the architecture (DeepMind's ``i3d.py``), sharing no code
with :mod:`i3d`: every layer pads its input with ``F.pad`` at run time
(TensorFlow "SAME" padding, recomputed per call), activations stay in the
default contiguous ``(B, C, T, H, W)`` layout, BatchNorm runs as a layer of
its own after each convolution, all in float32. Max pools pad with zeros,
as the port did; their inputs follow a ReLU, so that selects what -inf
would.

Module names follow the port's, so a state dict of :class:`i3d.model.InceptionI3d`
(the port's layout) loads with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (in channels, [1x1, 3x3 reduce, 3x3, 3x3 reduce, 3x3, pool proj]) of each
# Inception block, from the paper's Table 1 inflated to 3D.
BLOCKS = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def same_pad(sizes: torch.Size, kernel: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, ...]:
    """``F.pad`` amounts (last dim first) for TensorFlow SAME over T, H, W."""
    amounts: list[int] = []
    for n, k, s in zip(reversed(sizes), reversed(kernel), reversed(stride)):
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        amounts += [total // 2, total - total // 2]
    return tuple(amounts)


class PortUnit(nn.Module):
    """Conv3d (no bias) -> BatchNorm3d (eps 1e-3) -> ReLU; or a plain conv with bias."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn_relu: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride, self.bn_relu = kernel, stride, bn_relu
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, bias=not bn_relu)
        if bn_relu:
            self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, same_pad(x.shape[2:], self.kernel, self.stride)))
        if self.bn_relu:
            x = F.relu(self.bn(x))
        return x


class PortPool(nn.Module):
    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(F.pad(x, same_pad(x.shape[2:], self.kernel, self.stride)), self.kernel, self.stride)


class PortMixed(nn.Module):
    def __init__(self, cin: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        three = (3, 3, 3)
        self.b0 = PortUnit(cin, w0)
        self.b1a, self.b1b = PortUnit(cin, w1a), PortUnit(w1a, w1b, three)
        self.b2a, self.b2b = PortUnit(cin, w2a), PortUnit(w2a, w2b, three)
        self.b3a, self.b3b = PortPool(three, (1, 1, 1)), PortUnit(cin, w3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))]
        return torch.cat(branches, dim=1)


class PortI3D(nn.Module):
    """``(B, C, T, H, W)`` -> logits ``(B, classes, T')``."""

    def __init__(self, num_classes: int = 400, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[tuple[str, nn.Module]] = [
            ("Conv3d_1a_7x7", PortUnit(in_channels, 64, (7, 7, 7), (2, 2, 2))),
            ("MaxPool3d_2a_3x3", PortPool((1, 3, 3), (1, 2, 2))),
            ("Conv3d_2b_1x1", PortUnit(64, 64)),
            ("Conv3d_2c_3x3", PortUnit(64, 192, (3, 3, 3))),
            ("MaxPool3d_3a_3x3", PortPool((1, 3, 3), (1, 2, 2))),
        ]
        for name, (cin, widths) in BLOCKS.items():
            if name == "Mixed_4b":
                layers.append(("MaxPool3d_4a_3x3", PortPool((3, 3, 3), (2, 2, 2))))
            if name == "Mixed_5b":
                layers.append(("MaxPool3d_5a_2x2", PortPool((2, 2, 2), (2, 2, 2))))
            layers.append((name, PortMixed(cin, widths)))
        for name, layer in layers:
            self.add_module(name, layer)
        self.trunk = [name for name, _ in layers]
        self.logits = PortUnit(1024, num_classes, bn_relu=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_5c after the head's [2, 7, 7] VALID average pool (shrunk to
        the map for the small clips of quick benchmark runs)."""
        for name in self.trunk:
            x = getattr(self, name)(x)
        return F.avg_pool3d(x, (min(2, x.shape[2]), min(7, x.shape[3]), min(7, x.shape[4])), stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(x)).mean(dim=(3, 4))


FLOPS_PER_MAC = 2  # a multiply and an add


def conv_flops(model: PortI3D, x: torch.Tensor) -> int:
    """Multiply-add FLOPs of every convolution in one pass of ``model``."""
    total = 0

    def count(module: torch.nn.Conv3d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += FLOPS_PER_MAC * output.numel() * module.in_channels * module.weight[0, 0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    with torch.inference_mode():
        model(x)
    for hook in hooks:
        hook.remove()
    return total
