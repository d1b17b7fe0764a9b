"""The Charades loss against a direct computation."""

from __future__ import annotations

import math

import pytest
import torch

from i3d.train.loss import charades_loss, upsample_logits


def bce(logit: float, label: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(label * math.log(p) + (1 - label) * math.log(1 - p))


def test_upsample_puts_outputs_at_span_centres():
    logits = torch.tensor([[[0.0, 8.0]]])  # 2 outputs for 8 frames: centres at frames 1.5 and 5.5
    up = upsample_logits(logits, 8)[0, 0]
    assert up.tolist() == pytest.approx([0, 0, 1, 3, 5, 7, 8, 8])


def test_loss_terms_by_hand():
    logits = torch.tensor([[[1.0, -2.0], [0.5, 0.5]]])  # (B=1, C=2, T'=2)
    labels = torch.tensor([[[1, 1, 0, 0], [0, 0, 0, 0]]], dtype=torch.float32)  # (1, 2, T=4)
    terms = charades_loss(logits, labels, 0.5, 0.5)
    # Centres of 2 outputs over 4 frames sit at frames 0.5 and 2.5.
    class0 = [1.0, 1.0 - 3 * 0.25, 1.0 - 3 * 0.75, -2.0]
    per_frame = [bce(x, y) for x, y in zip(class0, [1, 1, 0, 0])] + [bce(0.5, 0)] * 4
    localization = sum(per_frame) / 8
    classification = (bce(1.0, 1) + bce(0.5, 0)) / 2
    assert terms.localization.item() == pytest.approx(localization, rel=1e-6)
    assert terms.classification.item() == pytest.approx(classification, rel=1e-6)
    assert terms.total.item() == pytest.approx(0.5 * localization + 0.5 * classification, rel=1e-6)
    weighted = charades_loss(logits, labels, 1.0, 0.0)
    assert weighted.total.item() == pytest.approx(localization, rel=1e-6)


def test_half_precision_logits_give_a_float32_loss_and_gradients():
    logits = torch.randn(2, 3, 2, dtype=torch.bfloat16, requires_grad=True)
    terms = charades_loss(logits, torch.zeros(2, 3, 16))
    assert terms.total.dtype == torch.float32
    terms.total.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad.float()).all()


def test_mismatched_labels_are_refused():
    with pytest.raises(ValueError, match="do not fit"):
        charades_loss(torch.zeros(1, 157, 7), torch.zeros(1, 4, 64))
