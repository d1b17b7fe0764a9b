"""Precision contexts and device defaults."""

from __future__ import annotations

import pytest
import torch

from i3d.model import InceptionI3d
from i3d.runtime import default_device, precision_context, prepare
from tests.conftest import randomize


def test_bf16_on_cpu_is_close_and_fp32_exact():
    model = prepare(randomize(InceptionI3d(), seed=9), torch.device("cpu"), "bf16")
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with precision_context(torch.device("cpu"), "fp32"):
        exact = model(x)
    with precision_context(torch.device("cpu"), "bf16"):
        fast = model(x).float()
    assert not torch.equal(exact, fast)
    assert (fast - exact).abs().max() <= 0.1 * exact.abs().max()


def test_bad_precision():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        prepare(InceptionI3d(), torch.device("cpu"), "fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        prepare(InceptionI3d(), torch.device("cpu"), "int8")  # type: ignore[arg-type]


def test_default_device_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert default_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda:1")
