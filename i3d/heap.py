"""Freed memory kept in the process between forward passes on the CPU.

PyTorch's CPU allocator is ``malloc``, and glibc's ``malloc`` serves every
block over its mmap threshold (128 KiB at first, 32 MiB at most) with a
fresh ``mmap`` and hands it back to the kernel on ``free``. A forward pass
allocates its activations anew, so every pass pays a page fault and the
zeroing of a page for each 4 KiB it writes: at 1x3x64x224x224 in fp32 that
is ~117,000 faults (~460 MB) per pass, ~12% of its time on a 2-core Zen 4
(``benchmarks/bench_runtimes.py``). OpenVINO and ONNX Runtime plan their
memory once and never pay it.

:func:`keep_freed_memory` tells glibc to serve those blocks from its heap
instead and to keep up to :data:`TRIM_THRESHOLD` bytes of free heap rather
than return them: the next pass reuses the same pages, with no fault.
The process then holds on to about its largest pass's memory, as the
runtimes above do: after passes of 64, 40 and 2x16 frames (fp32), 765 MB
resident, against a peak of 773 MB and ~590 MB between passes without it.
It changes nothing but where ``malloc`` takes its memory, and acts only
under glibc; elsewhere (musl, macOS, Windows) it does nothing.

:func:`i3d.runtime.prepare` calls it for a CPU model whose
:class:`i3d.fast.InferenceOptions` has ``keep_freed_memory`` (the default).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

__all__ = ["TRIM_THRESHOLD", "keep_freed_memory"]

# mallopt's parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

# Free heap beyond this is still handed back: mallopt takes a C int, so
# 2 GiB - 1 is the most it can keep, and more than the largest pass at
# 64 frames needs (a batch of long clips returns what exceeds it).
TRIM_THRESHOLD = 2**31 - 1

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Serve large blocks from glibc's heap and keep freed ones for reuse
    (see the module docstring). Process-wide and idempotent: only the first
    call acts. Returns whether glibc took the settings (False elsewhere)."""
    global _applied
    if _applied is None:
        mallopt = _glibc_mallopt()
        _applied = (
            mallopt is not None and mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        )
    return _applied


def _glibc_mallopt() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt  # musl has none
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt
