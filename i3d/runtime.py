"""Where and in what precision the network runs, and the fast inference path.

``fp32`` is exact: on CUDA it also turns TF32 off for convolutions, which
PyTorch otherwise allows by default on Ampere and newer GPUs and which
changes outputs by ~1e-3 relative. ``tf32``, ``bf16`` and ``fp16`` trade
that exactness for speed (bf16/fp16 through autocast, with channels-last
memory so that cuDNN picks tensor-core kernels).

:func:`prepare` configures the model's fast inference path
(:class:`i3d.fast.InferenceOptions`: channels-last activations, BatchNorm
folded into the convolutions, max pools without padded copies, 1x1
convolutions as matrix multiplies, fused ReLU). It is exact in fp32 and acts
only in eval mode without autograd. On the CPU it also keeps freed memory in
the process for the next pass (:mod:`i3d.heap`), process-wide.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from i3d import console, heap
from i3d.choices import BACKENDS, DEFAULT_BACKEND, OPENVINO_PRECISIONS, Backend
from i3d.fast import InferenceOptions
from i3d.model import InceptionI3d

__all__ = [
    "Precision",
    "PRECISIONS",
    "default_device",
    "prepare",
    "allow_tf32",
    "autocast",
    "precision_context",
    "cpu_has_native_bf16",
    "prepare_for_training",
    "available_devices",
    "resolve_device",
    "check_precision",
    "check_backend",
    "Placement",
]

Precision = Literal["fp32", "tf32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def default_device() -> torch.device:
    """``cuda:$LOCAL_RANK`` under torchrun, ``cuda`` if available, else CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local_rank = os.environ.get("LOCAL_RANK")
    return torch.device(f"cuda:{local_rank}" if local_rank is not None else "cuda")


# /proc/cpuinfo flags of CPUs that compute in bfloat16 natively: x86's
# AVX-512 BF16 and AMX, Arm's BF16 extension.
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
_warned_slow_bf16 = False


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has bfloat16 instructions (AVX-512 BF16, AMX, Arm BF16).

    Read at run time from the CPU's feature flags, since machines differ.
    """
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features") and _BF16_FLAGS & set(value.split()):
            return True
    return False


def check_precision(device: torch.device, precision: str) -> None:
    """Raise a one-line ``ValueError`` unless ``precision`` can run on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision in ("fp16", "tf32") and device.type != "cuda":
        raise ValueError(f"precision {precision} needs a CUDA device, not {device}; use bf16 or fp32 on the CPU")


def prepare(
    model: nn.Module, device: torch.device, precision: Precision = "fp32", *, options: InferenceOptions | None = None
) -> nn.Module:
    """Move ``model`` to ``device``, in place, ready for inference in ``precision``.

    For an :class:`~i3d.model.InceptionI3d` this sets its fast inference
    path (``options``; by default every optimisation, all exact in fp32, as
    a new model has them): it acts only in eval mode without autograd,
    computes the folded weights on the first call and keeps them until a
    parameter changes. The parameters
    and the state dict stay as they were, so the model can still be trained
    (``.train()``) or saved. Input stays an ordinary contiguous ``(B, C, T,
    H, W)`` float32 tensor; run the model under :func:`precision_context`.
    """
    global _warned_slow_bf16
    check_precision(device, precision)
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16() and not _warned_slow_bf16:
        _warned_slow_bf16 = True
        console.warning("this CPU has no native bfloat16 instructions: bf16 will be slow (fp32 is faster here)")
    model = model.to(device)
    if isinstance(model, InceptionI3d):
        model.configure_inference(options)
        if device.type == "cpu" and model.inference_options.keep_freed_memory:
            heap.keep_freed_memory()
    if device.type == "cuda" and precision in _AUTOCAST:
        model = model.to(memory_format=torch.channels_last_3d)
    return model.eval()


def prepare_for_training(model: nn.Module, device: torch.device, precision: Precision = "fp32") -> nn.Module:
    """Move ``model`` to ``device``, in place, in training mode, in the memory
    layout its precision trains fastest in.

    On CUDA, bf16 and fp16 (autocast) train with channels-last 3D weights, so
    that cuDNN picks tensor-core kernels and every activation follows that
    layout; fp32 and tf32 keep the default layout, which cuDNN runs as fast
    there. On the CPU the layout stays the default: oneDNN's channels-last
    backward was not measured faster here. Run each step under
    :func:`autocast` and :func:`allow_tf32` (or :func:`precision_context`
    without its inference mode). The fast inference path stays as
    configured and acts only in eval mode without autograd, so validation
    between steps runs on it.
    """
    check_precision(device, precision)
    model = model.to(device)
    if device.type == "cuda" and precision in _AUTOCAST:
        model = model.to(memory_format=torch.channels_last_3d)
    return model.train()


@contextlib.contextmanager
def allow_tf32(device: torch.device, precision: Precision) -> Iterator[None]:
    """TF32 convolutions and matmuls on CUDA for every precision but ``fp32``."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = precision != "fp32"
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``bf16`` and ``fp16``, a no-op otherwise."""
    if precision in _AUTOCAST:
        return torch.autocast(device.type, dtype=_AUTOCAST[precision])
    return contextlib.nullcontext()


@contextlib.contextmanager
def precision_context(device: torch.device, precision: Precision = "fp32") -> Iterator[None]:
    """Run the enclosed inference in ``precision`` (see the module docstring).

    Enter it around network calls only, not around a ``yield``: its global
    settings (TF32, autocast, inference mode) would leak into the caller.
    """
    with allow_tf32(device, precision), autocast(device, precision), torch.inference_mode():
        yield


# ---- device names (appended block: resolve_device and what it needs) -----------------


def available_devices() -> list[str]:
    """Names of the devices this process can use: ``cpu``, then ``cuda:0`` ... (and ``mps``, ``xpu:N``)."""
    names = ["cpu"]
    names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        names += [f"xpu:{i}" for i in range(xpu.device_count())]
    return names


def _unavailable_reason(device: torch.device) -> str:
    if device.type == "cuda":
        if not torch.backends.cuda.is_built():
            return "this PyTorch is built without CUDA"
        count = torch.cuda.device_count()
        if count == 0:
            return "no CUDA GPU is visible"
        return f"there {'is 1 CUDA GPU' if count == 1 else f'are {count} CUDA GPUs'}"
    return f"no {device.type} device here"


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """The device named by ``spec``, checked to exist here; ``None`` is :func:`default_device`.

    ``"cuda"`` without an index stays so (the current GPU; under torchrun the
    callers fill in ``LOCAL_RANK``).

    Raises:
        ValueError: one line naming what was asked and the devices there are,
            for an unknown name (``"gpu"``), a device type this PyTorch lacks
            (``"cuda"`` on a CPU-only build) or an index beyond the devices
            present (``"cuda:7"`` on a 2-GPU machine).
    """
    if spec is None:
        return default_device()
    available = available_devices()
    if isinstance(spec, torch.device):
        device = spec
    else:
        from i3d.errors import shorten

        try:
            device = torch.device(str(spec).strip())
        except (RuntimeError, ValueError):
            raise ValueError(f"unknown device {shorten(spec)!r}; available: {', '.join(available)}") from None
    if device.type == "cpu":
        return device
    name = device.type if device.index is None else f"{device.type}:{device.index}"
    if name in available or (device.index is None and any(a.startswith(f"{device.type}:") for a in available)):
        return device
    raise ValueError(
        f"device {name!r} is not available ({_unavailable_reason(device)}); available: {', '.join(available)}"
    )


def check_backend(device: torch.device, precision: str, backend: str) -> None:
    """Raise a one-line ``ValueError`` unless ``backend`` can run ``precision`` on ``device``
    (the torch backend runs whatever :func:`check_precision` allows)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return
    if device.type != "cpu":
        raise ValueError(f"backend {backend} runs on the CPU only, not {device}; use --device cpu or --backend torch")
    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(f"backend {backend} runs fp32 or bf16, not {precision}")
    if precision == "bf16" and not cpu_has_native_bf16():
        raise ValueError(f"backend {backend} runs bf16 only on CPUs with native bf16 (AVX-512 BF16, AMX); use fp32")
    if importlib.util.find_spec("openvino") is None:
        raise ValueError(f'backend {backend} needs OpenVINO, which is not installed: pip install "i3d[openvino]"')


@dataclass(frozen=True)
class Placement:
    """Where and how a network runs: its device, precision and backend, decided once.

    Build it with :meth:`resolve`, which the CLI and the Python API share,
    so that a bad device or a precision the device cannot run is the same
    one-line ``ValueError`` from both. A ``Placement`` is always valid: the
    constructor checks the precision against the device, and the backend
    (``"torch"``, or ``"openvino"``: :mod:`i3d.openvino`) against both.
    """

    device: torch.device
    precision: Precision = "fp32"
    backend: Backend = DEFAULT_BACKEND

    def __post_init__(self) -> None:
        check_backend(self.device, self.precision, self.backend)  # first: its errors name the backend
        check_precision(self.device, self.precision)

    @classmethod
    def resolve(
        cls, device: str | torch.device | None = None, precision: str = "fp32", backend: str = DEFAULT_BACKEND
    ) -> Placement:
        """The placement named by ``device`` (``None``: :func:`default_device`,
        the CPU for the openvino backend), ``precision`` and ``backend``; see
        :func:`resolve_device`, :func:`check_precision` and :func:`check_backend`."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if device is None and backend == "openvino":
            device = "cpu"
        return cls(resolve_device(device), precision, backend)  # type: ignore[arg-type]

    @property
    def engine_options(self) -> dict[str, object]:
        """The keyword arguments of :func:`i3d.chunked.chunked_outputs` and
        :func:`i3d.chunked.run_clips`: where and how the network runs."""
        return {"device": self.device, "precision": self.precision, "backend": self.backend}

    def context(self) -> contextlib.AbstractContextManager:
        """:func:`precision_context` of this placement, around network calls."""
        return precision_context(self.device, self.precision)
