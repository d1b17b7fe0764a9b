"""Chunked inference equals one pass over the whole input."""

from __future__ import annotations

import pytest
import torch

from i3d.chunked import LOGITS, POOLED, ChunkedI3d, RowGeometry, output_geometry, output_length, run_chunks
from i3d.fast import InferenceOptions
from i3d.model import InceptionI3d
from i3d.runtime import prepare
from tests.conftest import randomize
from tests.tolerances import NETWORK_RTOL


@pytest.fixture(scope="module", params=["plain", "fast"])
def model(request) -> InceptionI3d:
    """The model on the reference path, and on its default fast path as
    :func:`i3d.runtime.prepare` leaves it."""
    model = randomize(InceptionI3d(), seed=5)
    if request.param == "fast":
        return prepare(model, torch.device("cpu"), "fp32")
    return model.configure_inference(InferenceOptions.off())


@pytest.fixture(scope="module")
def one_pass(model) -> dict[int, dict[str, torch.Tensor]]:
    """The model's one-pass outputs per input length, computed by the first
    chunk size's test and compared with the chunked outputs of every size."""
    return {}


def chunked(model, x, size, output):
    t = x.shape[2]
    return torch.cat(list(run_chunks(model, (x[:, :, i : i + size] for i in range(0, t, size)), t, output)), dim=2)


# Every length parity at each stride (8 input frames per Mixed_5c step),
# chunk sizes below, at and above one step; chunks of one frame, the most
# carried state, on short inputs (they cost a network call per frame).
CASES = [(f, 1) for f in (1, 5, 9, 17)] + [(frames, size) for frames in (16, 40, 79, 130) for size in (7, 8, 13, 64)]
# The long inputs take a second or more each on a CPU: left out of the quick subset (pytest -m "not slow").
CASES = [pytest.param(*case, marks=pytest.mark.slow) if case[0] >= 79 else case for case in CASES]


@pytest.mark.parametrize("frames, size", CASES)
def test_chunked_equals_one_pass(model, one_pass, frames, size):
    x = torch.rand(1, 3, frames, 32, 40, generator=torch.Generator().manual_seed(frames)) * 2 - 1
    if frames not in one_pass:  # the same input for every chunk size
        with torch.no_grad():
            one_pass[frames] = {
                "pooled": model.extract_features(x),
                "logits": model(x),
                "Mixed_4f": model.forward_endpoints(x, ("Mixed_4f",))["Mixed_4f"],
            }
    for output, ref in one_pass[frames].items():
        got = chunked(model, x, size, output)
        assert got.shape == ref.shape, output
        # Random weights give activations in the thousands; real ones near 1.
        assert (got - ref).abs().max() <= NETWORK_RTOL * max(1.0, ref.abs().max().item()), output
        assert output_length(model, frames, output) == ref.shape[2]


def test_stream_api(model):
    stream = ChunkedI3d(model, total_frames=20, output="pooled")
    with torch.no_grad():
        assert stream.push(torch.zeros(1, 3, 4, 16, 16)) is None  # not enough context yet
        rest = stream.push(torch.zeros(1, 3, 16, 16, 16))
    assert rest is not None and rest.shape[2] == stream.output_length == 2 and stream.finished
    with pytest.raises(ValueError, match="more than the 20 announced"):
        stream.push(torch.zeros(1, 3, 1, 16, 16))


def test_bad_output(model):
    with pytest.raises(ValueError, match="unknown output"):
        ChunkedI3d(model, 10, "Mixed_9z")
    with pytest.raises(ValueError, match="expected 10"):
        list(run_chunks(model, [torch.zeros(1, 3, 4, 8, 8)], 10))


def test_engine_checks_and_leaves_no_precision_state(model):
    from i3d.chunked import chunked_outputs, run_clips

    x = torch.rand(3, 20, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1  # (C, T, H, W)
    outputs = chunked_outputs(model, (x[:, i : i + 6] for i in range(0, 20, 6)), 20, "logits", precision="bf16")
    first = next(outputs)  # paused between network calls: none of the precision settings apply here
    a = torch.ones(2, 2)
    assert (a @ a).dtype == torch.float32 and not torch.is_inference_mode_enabled()
    assert first.shape[:2] == (1, 400) and sum(y.shape[2] for y in outputs) + first.shape[2] == 2
    with pytest.raises(ValueError, match="expected 3 input channels"):
        list(chunked_outputs(model, [torch.zeros(2, 9, 16, 16)], 9))
    with pytest.raises(ValueError, match="got 9 frames, expected 12"):
        list(chunked_outputs(model, [torch.zeros(3, 9, 16, 16)], 12))
    clips = torch.rand(2, 3, 9, 16, 16, generator=torch.Generator().manual_seed(2))
    (batched,) = run_clips(model, [clips], "pooled")
    with torch.no_grad():
        for i in range(2):
            one = model.extract_features(clips[i : i + 1])
            assert (batched[i : i + 1] - one).abs().max() <= NETWORK_RTOL * max(1.0, one.abs().max().item())


def test_output_geometry_places_every_row():
    model = InceptionI3d()
    # Conv3d_1a and MaxPool_4a halve time, MaxPool_5a halves it again; the head
    # averages 2 steps of Mixed_5c, one step apart.
    assert output_geometry(model, "Conv3d_1a_7x7") == RowGeometry(stride=2, window=2)
    assert output_geometry(model, "Mixed_4f") == RowGeometry(stride=4, window=4)
    assert output_geometry(model, POOLED) == output_geometry(model, LOGITS) == RowGeometry(stride=8, window=16)
    for frames in (16, 17, 40, 64):
        # SAME padding: one cell per stride started; the head's VALID pool drops window / stride - 1 of them.
        assert output_length(model, frames, "Mixed_4f") == -(-frames // 4)
        assert output_length(model, frames, POOLED) == -(-frames // 8) - 1


def test_bf16_chunks_equal_one_bf16_pass():
    """bf16 on the CPU folds the stem's time taps (i3d.ops.fold_time); in
    chunks, each window folds only the frames it holds and pads only at the
    sequence's true ends."""
    from i3d.chunked import chunked_outputs
    from i3d.ops import onednn_bf16

    if not onednn_bf16():
        pytest.skip("oneDNN does not run bfloat16 on this CPU")
    model = prepare(randomize(InceptionI3d(), seed=5), torch.device("cpu"), "bf16")
    x = torch.rand(1, 3, 75, 41, 41, generator=torch.Generator().manual_seed(6)) * 2 - 1  # odd: symmetric padding
    whole = torch.cat(list(chunked_outputs(model, [x], 75, POOLED, precision="bf16")), dim=2).float()
    parts = chunked_outputs(model, list(x.split(17, dim=2)), 75, POOLED, precision="bf16")
    got = torch.cat(list(parts), dim=2).float()
    # Both round to bf16 at every layer; a kernel chosen for another chunk
    # size may sum in another order (5 layers on the longest path, 3 roundings each).
    assert got.shape == whole.shape == (1, 1024, 9, 1, 1)
    assert (got - whole).abs().max() <= 5 * 3 * 2**-8 * whole.abs().max()
