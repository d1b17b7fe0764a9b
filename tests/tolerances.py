"""How far two float32 computations of I3D may differ, derived from float32
rounding, not measured on one machine.

Two computations of the network (the model against tests/reference.py, the
fast path against the plain one, a chunked run against a whole one) differ
only in the order their sums are rounded in: oneDNN and MKL pick blocking,
vector width (AVX2, AVX-512, AMX), FMA use and the split of a reduction over
threads per CPU and per thread count. So the bound is the rounding error of
float32 accumulation, not a number seen on one CPU.

- One dot product of ``K`` terms, summed in any order, is off by at most
  ``K * u`` of the sum of its terms' magnitudes (Higham, "Accuracy and
  Stability of Numerical Algorithms", 3.1), and, since the rounding errors
  are independent and of mean zero, by about ``sqrt(K) * u`` with high
  probability (Higham and Mary, SIAM J. Sci. Comput. 2019).
  ``u = 2**-24`` is float32's unit roundoff. The worst case ``K * u`` is
  far too loose to catch a wrong padding cell or BatchNorm eps through 22
  layers, so the probabilistic ``sqrt(K) * u`` is used.
- The longest dot product in I3D is Mixed_5c's Branch_1 3x3x3 convolution
  over 192 channels: ``K = 192 * 27 = 5184`` (the stem's 7x7x7 over 3
  channels is 1029, the logits' 1x1 over 1024 channels 1024).
- The longest path holds ``DEPTH = 22`` convolutions (the stem's three,
  two in each of the nine Inception blocks, the logits). The test weights
  keep activations near unit scale (tests/conftest.py ``randomize``), so
  each layer passes on its input's relative error about unchanged and adds
  its own: the errors of the layers add up.
- Both computations round, independently: a factor 2.

``NETWORK_RTOL = 2 * 22 * sqrt(5184) * 2**-24 = 1.9e-4``, applied to the
largest difference over the largest magnitude of the output. Measured
(benchmarks are not tests; for the record), the worst case over the shapes
of tests/test_model.py on a Zen 4 CPU was 1.12e-5 with AVX-512 and 2
threads, 8.0e-6 with 1 thread, 9.6e-6 with oneDNN capped at AVX2: about 17x
inside the bound. On the same weights, PyTorch's BatchNorm eps (1e-5) or
TF SAME padding with front and back swapped errs by more than 1.
"""

from __future__ import annotations

import math

import torch

__all__ = ["FP32_UNIT_ROUNDOFF", "LONGEST_DOT", "DEPTH", "NETWORK_RTOL", "relative_error"]

FP32_UNIT_ROUNDOFF = 2.0**-24
LONGEST_DOT = 192 * 27  # Mixed_5c, Branch_1: 3x3x3 convolution over 192 channels
DEPTH = 3 + 2 * 9 + 1  # stem convolutions, two per Inception block, logits
NETWORK_RTOL = 2 * DEPTH * math.sqrt(LONGEST_DOT) * FP32_UNIT_ROUNDOFF  # ~1.9e-4


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest difference over the largest magnitude of ``want``."""
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()
