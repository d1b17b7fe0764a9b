"""An independent functional I3D, written from DeepMind's ``i3d.py`` for tests.

It shares no code with :mod:`i3d.model`: it reads a state dict, pads every
layer explicitly the way TensorFlow documents "SAME" padding (per dimension,
always through ``F.pad``, max pools padded with -inf), and applies the head
as TensorFlow would (VALID average pool, shrunk only where the map is
smaller than the window).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# DeepMind's i3d.py, in order: (name, kind, args).
# conv: (kernel, stride); pool: (kernel, stride); mixed: branch widths.
ARCH = [
    ("Conv3d_1a_7x7", "conv", ((7, 7, 7), (2, 2, 2))),
    ("MaxPool3d_2a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", "conv", ((1, 1, 1), (1, 1, 1))),
    ("Conv3d_2c_3x3", "conv", ((3, 3, 3), (1, 1, 1))),
    ("MaxPool3d_3a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", "mixed", None),
    ("Mixed_3c", "mixed", None),
    ("MaxPool3d_4a_3x3", "pool", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", "mixed", None),
    ("Mixed_4c", "mixed", None),
    ("Mixed_4d", "mixed", None),
    ("Mixed_4e", "mixed", None),
    ("Mixed_4f", "mixed", None),
    ("MaxPool3d_5a_2x2", "pool", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", "mixed", None),
    ("Mixed_5c", "mixed", None),
]


def same_pads(sizes, kernel, stride):
    """F.pad argument for TF SAME padding of the trailing three dims."""
    pads = []
    for n, k, s in zip(sizes, kernel, stride):
        out = math.ceil(n / s)
        needed = max(0, (out - 1) * s + k - n)
        before = needed // 2
        pads.append((before, needed - before))
    (tb, ta), (hb, ha), (wb, wa) = pads
    return (wb, wa, hb, ha, tb, ta)


def unit(x, sd, prefix, kernel, stride, eps=1e-3):
    x = F.pad(x, same_pads(x.shape[2:], kernel, stride), value=0.0)
    x = F.conv3d(x, sd[prefix + ".conv3d.weight"], None, stride)
    x = F.batch_norm(
        x,
        sd[prefix + ".bn.running_mean"],
        sd[prefix + ".bn.running_var"],
        sd[prefix + ".bn.weight"],
        sd[prefix + ".bn.bias"],
        training=False,
        eps=eps,
    )
    return torch.relu(x)


def pool(x, kernel, stride):
    x = F.pad(x, same_pads(x.shape[2:], kernel, stride), value=-math.inf)
    return F.max_pool3d(x, kernel, stride)


def mixed(x, sd, name, eps=1e-3):
    one, three = (1, 1, 1), (3, 3, 3)
    b0 = unit(x, sd, name + ".b0", one, one, eps)
    b1 = unit(unit(x, sd, name + ".b1a", one, one, eps), sd, name + ".b1b", three, one, eps)
    b2 = unit(unit(x, sd, name + ".b2a", one, one, eps), sd, name + ".b2b", three, one, eps)
    b3 = unit(pool(x, three, one), sd, name + ".b3b", one, one, eps)
    return torch.cat([b0, b1, b2, b3], dim=1)


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, eps: float = 1e-3) -> dict[str, torch.Tensor]:
    """All endpoints, plus ``"pooled"`` and ``"Logits"`` (B, classes, T').

    ``eps``: BatchNorm's (DeepMind's 1e-3; the PyTorch copies in VideoGPT,
    TATS and cd-fvd use 1e-5).
    """
    out = {}
    for name, kind, args in ARCH:
        if kind == "conv":
            x = unit(x, sd, name, *args, eps)
        elif kind == "pool":
            x = pool(x, *args)
        else:
            x = mixed(x, sd, name, eps)
        out[name] = x
    t, h, w = x.shape[2:]
    x = F.avg_pool3d(x, (min(2, t), min(7, h), min(7, w)), stride=1)
    out["pooled"] = x
    logits = F.conv3d(x, sd["logits.conv3d.weight"], sd["logits.conv3d.bias"])
    out["Logits"] = logits.mean(dim=(3, 4))
    return out
