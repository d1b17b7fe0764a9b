"""Inception-v1 I3D (Carreira and Zisserman, CVPR 2017), exact to DeepMind's release.

The network follows DeepMind's ``kinetics-i3d`` Sonnet code layer for layer,
and keeps the module names and state-dict layout of the widely used PyTorch
port, so that its published ``.pt`` files load with ``strict=True``.

Exactness rests on three details that ports often get wrong: TensorFlow
"SAME" padding is asymmetric and depends on the input size
(:func:`i3d.layers.tf_same_padding`); TensorFlow's max pool never selects a
padded cell, so pools pad with -inf; BatchNorm uses ``eps = 1e-3``.

Every layer also takes a temporal window of a longer input
(:class:`i3d.layers.Span`; exact chunked inference in :mod:`i3d.chunked`)
and, in eval mode without autograd, runs the fast path of :mod:`i3d.fast`.

Tensor layout everywhere: ``(B, C, T, H, W)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from i3d import fast
from i3d.choices import ENDPOINTS
from i3d.fast import InferenceOptions
from i3d.layers import MaxPool3dSame, SameWindow3d, Span, SpanStage, Unit3D, temporal_window

__all__ = ["InceptionI3d", "ENDPOINTS", "MIN_FRAMES", "HEAD_POOL", "FEATURE_DIM"]


# With SAME padding every layer maps n >= 1 cells to ceil(n / s) >= 1 cells,
# so a single frame of a single pixel runs through the whole network.
MIN_FRAMES = 1
MIN_SIZE = 1

# The head averages a VALID [2, 7, 7] window: 2 time steps of Mixed_5c
# (16 input frames) and the full 7x7 map of a 224x224 input (224 / 32 = 7).
HEAD_POOL = (2, 7, 7)


class InceptionModule(nn.Module):
    """Four branches concatenated on channels: 1x1; 1x1 then 3x3; 1x1 then
    3x3; 3x3 max pool then 1x1. ``out_channels`` lists
    ``[b0, b1a, b1b, b2a, b2b, b3b]``."""

    def __init__(self, in_channels: int, out_channels: list[int], name: str) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = out_channels
        self.name = name
        self.b0 = Unit3D(in_channels, c0, name=name + "/Branch_0/Conv3d_0a_1x1")
        self.b1a = Unit3D(in_channels, c1a, name=name + "/Branch_1/Conv3d_0a_1x1")
        self.b1b = Unit3D(c1a, c1b, kernel_shape=(3, 3, 3), name=name + "/Branch_1/Conv3d_0b_3x3")
        self.b2a = Unit3D(in_channels, c2a, name=name + "/Branch_2/Conv3d_0a_1x1")
        self.b2b = Unit3D(c2a, c2b, kernel_shape=(3, 3, 3), name=name + "/Branch_2/Conv3d_0b_3x3")
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1), nonnegative=True)  # its input is ReLU outputs
        self.b3b = Unit3D(in_channels, c3b, name=name + "/Branch_3/Conv3d_0b_1x1")
        self.out_channels = c0 + c1b + c2b + c3b
        self.stacked = fast.StackedWeights()  # b0 and b2a as one matmul (fast.merged_pointwise)

    def __getstate__(self) -> dict:
        # As Unit3D's folded weights: copies and pickles restack on first use.
        return {**super().__getstate__(), "stacked": fast.StackedWeights()}

    def output_length(self, length: int) -> int:
        return length  # every branch has stride 1

    def input_start(self, out_start: int, length: int) -> int:
        """See :meth:`Unit3D.input_start`."""
        chains = ((self.b0,), (self.b1a, self.b1b), (self.b2a, self.b2b), (self.b3a, self.b3b))
        starts = []
        for chain in chains:
            o = out_start
            for unit in reversed(chain):
                o = unit.input_start(o, length)
            starts.append(o)
        return min(starts)

    def forward_span(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span]:
        branches = fast.inception_branches(self, x, span) if fast.active(self.b0) else None
        if branches is None:
            branches = [
                self.b0.forward_span(x, span),
                self.b1b.forward_span(*self.b1a.forward_span(x, span)),
                self.b2b.forward_span(*self.b2a.forward_span(x, span)),
                self.b3b.forward_span(*self.b3a.forward_span(x, span)),
            ]
        (y0, s0), (y1, s1), (y2, s2), (y3, s3) = branches
        out = s0.intersect(s1).intersect(s2).intersect(s3)
        # Inside a window the 3x3 branches lose a cell of context at each
        # end that the 1x1 branch keeps: crop all to the common cells.
        ys = [y[:, :, out.start - s.start : out.stop - s.start] for y, s in ((y0, s0), (y1, s1), (y2, s2), (y3, s3))]
        return torch.cat(ys, dim=1), out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast.exporting():  # each branch on the whole input, no spans
            branches = (self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x)))
            return torch.cat(branches, dim=1)
        return self.forward_span(x, Span.full(x.shape[2]))[0]


class HeadPool(nn.Module):
    """The head's VALID average pool over ``[2, 7, 7]`` cells of Mixed_5c,
    shrunk to the extent that is left for small inputs (fewer than 2 time
    steps or 7x7 cells)."""

    def forward_span(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span]:
        kt = min(HEAD_POOL[0], span.length)
        kh, kw = min(HEAD_POOL[1], x.shape[3]), min(HEAD_POOL[2], x.shape[4])
        x, _, _, out_span = temporal_window(x, span, kt, 1, same=False)
        return F.avg_pool3d(x, (kt, kh, kw), stride=1), out_span

    def output_length(self, length: int) -> int:
        return length - min(HEAD_POOL[0], length) + 1

    def input_start(self, out_start: int, length: int) -> int:
        return out_start  # output o averages cells o and o + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast.exporting():  # no spans: nothing to branch on but the window
            return F.avg_pool3d(x, [min(k, n) for k, n in zip(HEAD_POOL, x.shape[2:])], stride=1)
        return self.forward_span(x, Span.full(x.shape[2]))[0]


# (name, in_channels, [b0, b1a, b1b, b2a, b2b, b3b]) from DeepMind's i3d.py.
_MIXED: dict[str, tuple[int, list[int]]] = {
    "Mixed_3b": (192, [64, 96, 128, 16, 32, 32]),
    "Mixed_3c": (256, [128, 128, 192, 32, 96, 64]),
    "Mixed_4b": (128 + 192 + 96 + 64, [192, 96, 208, 16, 48, 64]),
    "Mixed_4c": (192 + 208 + 48 + 64, [160, 112, 224, 24, 64, 64]),
    "Mixed_4d": (160 + 224 + 64 + 64, [128, 128, 256, 24, 64, 64]),
    "Mixed_4e": (128 + 256 + 64 + 64, [112, 144, 288, 32, 64, 64]),
    "Mixed_4f": (112 + 288 + 64 + 64, [256, 160, 320, 32, 128, 128]),
    "Mixed_5b": (256 + 320 + 128 + 128, [256, 160, 320, 32, 128, 128]),
    "Mixed_5c": (256 + 320 + 128 + 128, [384, 192, 384, 48, 128, 128]),
}

FEATURE_DIM = 384 + 384 + 128 + 128  # channels of Mixed_5c


class InceptionI3d(nn.Module):
    """Inflated Inception-v1 for video, as in DeepMind's ``kinetics-i3d``.

    Args:
        num_classes: number of logits.
        spatial_squeeze: if True, ``forward`` returns ``(B, num_classes, T')``
            (averaging the head's spatial positions when the input is larger
            than 224x224); if False, ``(B, num_classes, T', H', W')``.
        final_endpoint: build the network up to this endpoint (one of
            :data:`ENDPOINTS`); ``forward`` returns its output.
        name: scope name, kept for compatibility.
        in_channels: 3 for RGB, 2 for optical flow.
        dropout_keep_prob: probability of *keeping* an activation before the
            logits (the PyTorch port passed it as the drop probability).

    Input: ``(B, in_channels, T, H, W)`` in ``[-1, 1]``, any ``T, H, W >= 1``.
    The head averages a ``[2, 7, 7]`` window of Mixed_5c without padding, as
    DeepMind's does; where Mixed_5c is smaller than that (fewer than 9
    frames, or frames smaller than 193 pixels), the window shrinks to the
    extent that is left, so every input of at least one frame gives output.
    For ``T >= 9`` and 224x224 input, ``T' = ceil(T / 8) - 1``.
    """

    def __init__(
        self,
        num_classes: int = 400,
        spatial_squeeze: bool = True,
        final_endpoint: str = "Logits",
        name: str = "inception_i3d",
        in_channels: int = 3,
        dropout_keep_prob: float = 0.5,
    ) -> None:
        if final_endpoint not in ENDPOINTS:
            raise ValueError(f"unknown final_endpoint {final_endpoint!r}; choose one of {', '.join(ENDPOINTS)}")
        if not 0.0 < dropout_keep_prob <= 1.0:
            raise ValueError(f"dropout_keep_prob must be in (0, 1], got {dropout_keep_prob}")
        super().__init__()
        self.num_classes = num_classes
        self.spatial_squeeze = spatial_squeeze
        self.final_endpoint = final_endpoint
        self.name = name
        self.in_channels = in_channels
        self.dropout_keep_prob = dropout_keep_prob
        self.num_features = FEATURE_DIM  # timm's name for the width forward_head pools

        last = ENDPOINTS.index(final_endpoint)
        # Every max pool reads ReLU outputs (a unit's, or an Inception
        # module's branches'), never a negative value: nonnegative=True.
        layers: dict[str, nn.Module] = {
            "Conv3d_1a_7x7": Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2), name="Conv3d_1a_7x7"),
            "MaxPool3d_2a_3x3": MaxPool3dSame((1, 3, 3), (1, 2, 2), nonnegative=True),
            "Conv3d_2b_1x1": Unit3D(64, 64, name="Conv3d_2b_1x1"),
            "Conv3d_2c_3x3": Unit3D(64, 192, (3, 3, 3), name="Conv3d_2c_3x3"),
            "MaxPool3d_3a_3x3": MaxPool3dSame((1, 3, 3), (1, 2, 2), nonnegative=True),
            "MaxPool3d_4a_3x3": MaxPool3dSame((3, 3, 3), (2, 2, 2), nonnegative=True),
            "MaxPool3d_5a_2x2": MaxPool3dSame((2, 2, 2), (2, 2, 2), nonnegative=True),
        }
        for endpoint in ENDPOINTS[: min(last + 1, ENDPOINTS.index("Logits"))]:
            if endpoint in _MIXED:
                cin, channels = _MIXED[endpoint]
                layers[endpoint] = InceptionModule(cin, channels, endpoint)
            # Registration order is network order, as in the PyTorch port.
            self.add_module(endpoint, layers[endpoint])
        self._features = [e for e in ENDPOINTS if e in self._modules]

        if last >= ENDPOINTS.index("Logits"):
            self.avg_pool = HeadPool()
            self.dropout = nn.Dropout(p=1.0 - dropout_keep_prob)
            self.logits = self._make_logits(num_classes)

    def _make_logits(self, num_classes: int) -> Unit3D:
        return Unit3D(FEATURE_DIM, num_classes, activation_fn=False, use_batch_norm=False, use_bias=True, name="logits")

    def replace_logits(self, num_classes: int) -> None:
        """Swap the classifier for a fresh one with ``num_classes`` outputs."""
        if not hasattr(self, "logits"):
            raise ValueError(f"the model ends at {self.final_endpoint}; it has no logits to replace")
        self.num_classes = num_classes
        device = self.logits.conv3d.weight.device
        self.logits = self._make_logits(num_classes).to(device)
        self.logits.options = self.inference_options  # a prepared model stays prepared

    reset_classifier = replace_logits

    def configure_inference(self, options: InferenceOptions | None = None) -> InceptionI3d:
        """Set the fast inference path's switches, in place (``None``: all
        on, the default; :meth:`InferenceOptions.off`: the reference path).
        It acts only in eval mode without autograd; parameters and state
        dict are untouched, so the model still trains as before."""
        options = InferenceOptions() if options is None else options
        for module in self.modules():
            if isinstance(module, SameWindow3d):
                module.options = options
            if isinstance(module, Unit3D):
                module.fold_cache.clear()  # also how in-place writes to inference tensors are seen
        return self

    @property
    def inference_options(self) -> InferenceOptions:
        return self.Conv3d_1a_7x7.options  # type: ignore[return-value]

    @property
    def trunk(self) -> tuple[str, ...]:
        """The trunk endpoints this model has, in network order."""
        return tuple(self._features)

    @property
    def has_logits(self) -> bool:
        return hasattr(self, "logits")

    def stages(self, stop: str) -> list[tuple[str, SpanStage]]:
        """``(name, stage)`` in network order up to ``stop``: a trunk
        endpoint, or ``"avg_pool"`` for the trunk followed by the head's
        pool (then :meth:`classify` turns the result into logits)."""
        if stop == "avg_pool":
            if not self.has_logits:
                raise ValueError(f"the model ends at {self.final_endpoint}; it has no head")
            names = list(self._features) + ["avg_pool"]
        elif stop in self._features:
            names = self._features[: self._features.index(stop) + 1]
        else:
            raise ValueError(f"unknown endpoint {stop!r}; choose one of {', '.join(self._features)}")
        return [(name, getattr(self, name)) for name in names]

    def temporal_stride(self, stop: str) -> int:
        """Input frames per output cell along time at ``stop`` (a trunk endpoint)."""
        stride = 1
        for _, stage in self.stages(stop):
            stride *= getattr(stage, "stride", (1,))[0]
        return stride

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is ``(B, in_channels, T, H, W)`` with
        ``T, H, W >= 1``."""
        if x.dim() != 5:
            raise ValueError(f"expected input (B, C, T, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")
        if x.shape[2] < MIN_FRAMES or x.shape[3] < MIN_SIZE or x.shape[4] < MIN_SIZE:
            raise ValueError(f"input must have T, H, W >= 1, got shape {tuple(x.shape)}")

    def forward_endpoints_span(
        self, x: torch.Tensor, span: Span, endpoints: tuple[str, ...] | None = None, stop: str | None = None
    ) -> dict[str, tuple[torch.Tensor, Span]]:
        """Run the trunk up to ``stop`` (default: the last built) on ``x``
        ``(B, C, t, H, W)``, the cells ``span`` of the full input; returns
        ``{name: (tensor, span)}`` for ``endpoints`` (default: ``stop``),
        each span in that endpoint's own time cells."""
        self.check_input(x)
        if x.shape[2] != span.size:
            raise ValueError(f"input has {x.shape[2]} frames but span {span} has {span.size}")
        stop = stop or self._features[-1]
        if stop not in self._features:
            raise ValueError(f"endpoint {stop!r} is not part of this model (built up to {self.final_endpoint})")
        wanted = set(endpoints or (stop,))
        out: dict[str, tuple[torch.Tensor, Span]] = {}
        for name in self._features:
            x, span = self._modules[name].forward_span(x, span)  # type: ignore[union-attr]
            if name in wanted:
                out[name] = (x, span)
            if name == stop:
                break
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> Mixed_5c ``(B, 1024, ceil(T/8), ceil(H/32), ceil(W/32))``."""
        return self.forward_endpoints_span(x, Span.full(x.shape[2]), stop="Mixed_5c")["Mixed_5c"][0]

    def forward_endpoints(self, x: torch.Tensor, endpoints: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Read out intermediate endpoints, e.g. ``("Mixed_4f", "Mixed_5c")``."""
        unknown = [e for e in endpoints if e not in self._features]
        if unknown:
            raise ValueError(f"unknown or unbuilt endpoints {unknown}; available: {', '.join(self._features)}")
        last = max(endpoints, key=self._features.index)
        result = self.forward_endpoints_span(x, Span.full(x.shape[2]), endpoints, stop=last)
        return {name: t for name, (t, _) in result.items()}

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Mixed_5c ``(B, 1024, t, h, w)`` -> logits as :meth:`forward` returns them
        (or the pooled features if ``pre_logits``)."""
        return self._head_span(x, Span.full(x.shape[2]), pre_logits)[0]

    def _head_span(self, x: torch.Tensor, span: Span, pre_logits: bool = False) -> tuple[torch.Tensor, Span]:
        x, span = self.avg_pool.forward_span(x, span)  # (B, 1024, T', H', W')
        if pre_logits:
            return x, span
        x = self.classify(x)
        if self.final_endpoint == "Predictions":
            return torch.softmax(x.mean(dim=2), dim=1), span  # (B, num_classes)
        return x, span

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, 1024, T', H', W')`` -> logits
        ``(B, num_classes, T')``, or ``(B, num_classes, T', H', W')`` without
        ``spatial_squeeze``. Acts on each time step alone."""
        x = self.logits(self.dropout(pooled))  # (B, num_classes, T', H', W')
        if self.spatial_squeeze or self.final_endpoint == "Predictions":
            x = x.mean(dim=(3, 4))  # (B, num_classes, T')
        return x

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> pooled Mixed_5c ``(B, 1024, T', H', W')``
        (``H' = W' = 1`` for 224x224 input)."""
        return self.avg_pool(self.forward_features(x))

    def forward_span(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span]:
        """:meth:`forward` on a temporal window of a longer input (see :class:`Span`)."""
        feats, span = self.forward_endpoints_span(x, span)[self._features[-1]]
        if not hasattr(self, "logits"):
            return feats, span
        return self._head_span(feats, span)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> per-time logits ``(B, num_classes, T')``
        (see the class docstring for other endpoints and shapes)."""
        return self.forward_span(x, Span.full(x.shape[2]))[0]
