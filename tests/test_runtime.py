"""Precision contexts and device defaults."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from i3d import ops, runtime
from i3d.fast import InferenceOptions
from i3d.layers import tf_same_padding
from i3d.model import InceptionI3d
from i3d.ops import max_pool_strided
from i3d.runtime import cpu_has_native_bf16, default_device, precision_context, prepare
from i3d.weights import inception_i3d
from tests.conftest import random_weights_file, randomize
from tests.tolerances import NETWORK_RTOL


@pytest.mark.slow
def test_bf16_on_cpu_is_close_and_fp32_exact():
    model = prepare(randomize(InceptionI3d(), seed=9), torch.device("cpu"), "bf16")
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with precision_context(torch.device("cpu"), "fp32"):
        exact = model(x)
    with precision_context(torch.device("cpu"), "bf16"):
        fast = model(x).float()
    assert not torch.equal(exact, fast)
    assert (fast - exact).abs().max() <= 0.1 * exact.abs().max()


def test_bf16_fuses_relu_into_onednn_and_stays_close(monkeypatch):
    if not ops.FUSED_RELU:
        pytest.skip("this PyTorch build ships no oneDNN fused convolution")
    model = prepare(randomize(InceptionI3d(final_endpoint="Mixed_3b"), seed=10), torch.device("cpu"), "bf16")
    x = torch.rand(1, 3, 6, 24, 24, generator=torch.Generator().manual_seed(10)) * 2 - 1
    with precision_context(torch.device("cpu"), "fp32"):
        exact = model(x)
    calls: list[dict] = []

    def counted(op):
        def run(*args, **kwargs):
            calls.append(kwargs)
            return op(*args, **kwargs)

        return run

    for name in ("conv3d_relu", "pointwise_conv"):
        monkeypatch.setattr(ops, name, counted(getattr(ops, name)))
    with precision_context(torch.device("cpu"), "bf16"):
        fused = model(x)
    assert fused.dtype == torch.bfloat16
    # oneDNN runs bf16 here: all 9 units (the stem's 3, Mixed_3b's 6, whose b0
    # and b2a are one matmul) fuse their ReLU in 8 calls; elsewhere only the
    # 1x1s go through oneDNN's matmul, unfused.
    relus = [call.get("relu", True) for call in calls]
    assert relus == ([True] * 8 if ops.onednn_bf16() else [False] * 4)
    # bf16 keeps 8 significant bits (unit roundoff 2**-8): each of the 5
    # layers on the longest path rounds its input, its weights and its
    # output (3 roundings), and errors of this size add up across layers.
    bound = 5 * 3 * 2**-8
    assert (fused.float() - exact).abs().max() <= bound * exact.abs().max()


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


@pytest.mark.slow
def test_prepare_keeps_the_model_trainable():
    model = randomize(InceptionI3d(dropout_keep_prob=1.0), seed=4)
    keys = list(model.state_dict())
    plain = InceptionI3d(dropout_keep_prob=1.0)
    plain.load_state_dict(model.state_dict())
    prepare(model, torch.device("cpu"), "fp32")
    assert list(model.state_dict()) == keys  # nothing folded into the state dict
    x = torch.rand(2, 3, 9, 32, 32) * 2 - 1
    # Training mode runs BatchNorm on the batch, with gradients, as before.
    model.train(), plain.train()
    y, ref = model(x), plain(x)
    assert torch.equal(y, ref)
    y.sum().backward()
    assert model.Mixed_3b.b1b.conv3d.weight.grad is not None


@pytest.mark.slow
def test_folded_weights_follow_parameter_changes():
    model = prepare(randomize(InceptionI3d(), seed=6), torch.device("cpu"), "fp32")
    other = randomize(InceptionI3d(), seed=7)
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.inference_mode():
        before = model(x)
    model.load_state_dict(other.state_dict())  # in place: the folded cache must notice
    with torch.inference_mode():
        after = model(x)
        expected = other(x)
    assert not torch.allclose(before, after)
    # Stale folded weights would be off by far more than rounding.
    assert (after - expected).abs().max() <= NETWORK_RTOL * expected.abs().max()


def test_every_optimisation_alone_is_exact():
    model = randomize(InceptionI3d(), seed=8)
    x = torch.rand(1, 3, 10, 33, 40) * 2 - 1
    with torch.inference_mode():
        ref = model(x)
    for name in (f.name for f in dataclasses.fields(InferenceOptions)):
        prepare(model, torch.device("cpu"), "fp32", options=dataclasses.replace(InferenceOptions.off(), **{name: True}))
        with torch.inference_mode():
            got = model(x)
        # Folding reorders roundings, which these random weights (activations
        # in the hundreds) amplify to ~1e-5; the parity tests of
        # test_model.py bound the whole fast path against the reference.
        assert (got - ref).abs().max() <= NETWORK_RTOL * ref.abs().max(), name
    assert model.configure_inference(InferenceOptions.off()).inference_options == InferenceOptions.off()


@pytest.mark.parametrize(
    "kernel, stride",
    [((3, 3, 3), (1, 1, 1)), ((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2))],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_strided_pool_equals_max_pool(kernel, stride, channels_last):
    g = torch.Generator().manual_seed(sum(kernel) + sum(stride))
    for size in [(1, 1, 1), (2, 5, 6), (7, 8, 9), (4, 2, 3)]:
        x = torch.randn((2, 4, *size), generator=g)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        pads = tuple(tf_same_padding(n, k, s) for n, k, s in zip(size, kernel, stride))
        flat = [p for pair in reversed(pads) for p in pair]
        expected = F.max_pool3d(F.pad(x, flat, value=-math.inf), kernel, stride)
        assert torch.equal(max_pool_strided(x, kernel, stride, pads), expected), size
        # A window inside a longer sequence: no padding in time.
        inner = ((0, 0), *pads[1:])
        if size[0] >= kernel[0]:
            got = max_pool_strided(x, kernel, stride, inner)
            expected = F.max_pool3d(F.pad(x, [*flat[:4], 0, 0], value=-math.inf), kernel, stride)
            assert torch.equal(got, expected), size


@pytest.mark.parametrize("kernel, stride", [((3, 3, 3), (1, 1, 1)), ((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2))])
def test_strided_pool_of_relu_outputs_in_bf16_compares_as_integers_exactly(kernel, stride):
    g = torch.Generator().manual_seed(sum(kernel) + sum(stride))
    size = (7, 8, 9)
    x = torch.randn((2, 16, *size), generator=g)
    # ReLU outputs as oneDNN writes them: -0.0 for every negative input, and exact ties.
    x = (
        torch.where(x > 0, x, -0.0 * x.abs())
        .round(decimals=1)
        .bfloat16()
        .contiguous(memory_format=torch.channels_last_3d)
    )
    assert torch.signbit(x).any() and not (x < 0).any()
    pads = tuple(tf_same_padding(n, k, s) for n, k, s in zip(size, kernel, stride))
    flat = [p for pair in reversed(pads) for p in pair]
    expected = F.max_pool3d(F.pad(x.float(), flat, value=-math.inf), kernel, stride).bfloat16()
    got = max_pool_strided(x, kernel, stride, pads, nonnegative=True)
    assert got.dtype == torch.bfloat16 and got.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(got, expected)  # -0.0 == 0.0: the same values


@pytest.mark.parametrize(
    "kernel, stride",
    [((3, 3, 3), (1, 1, 1)), ((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2))],
)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_pooling_in_slabs_of_frames_gives_the_whole_pool(kernel, stride, layout):
    g = torch.Generator().manual_seed(sum(kernel) * 7 + sum(stride))
    for frames in (1, 2, 5, 9):
        x = torch.randn((2, 8, frames, 6, 7), generator=g).contiguous(memory_format=layout)
        pads = tuple(tf_same_padding(n, k, s) for n, k, s in zip(x.shape[2:], kernel, stride))
        # The whole sequence, and a window inside a longer one (no padding in time).
        for padding in (pads, ((0, 0), *pads[1:])) if frames >= kernel[0] else (pads,):
            whole = max_pool_strided(x, kernel, stride, padding)
            for slab in range(1, frames + 2):
                got = max_pool_strided(x, kernel, stride, padding, slab_frames=slab)
                assert got.is_contiguous(memory_format=layout)
                assert torch.equal(got, whole), (frames, padding, slab)
    relu = torch.relu(torch.randn((1, 16, 7, 5, 5), generator=g)).bfloat16()
    pads = tuple(tf_same_padding(n, k, s) for n, k, s in zip(relu.shape[2:], kernel, stride))
    expected = max_pool_strided(relu, kernel, stride, pads)
    assert torch.equal(max_pool_strided(relu, kernel, stride, pads, nonnegative=True, slab_frames=2), expected)


def test_the_last_level_cache_is_read_from_sysfs(tmp_path):
    for index, (level, size) in enumerate([(1, "48K"), (2, "2048K"), (3, "32768K")]):
        (tmp_path / f"index{index}").mkdir()
        (tmp_path / f"index{index}" / "level").write_text(f"{level}\n")
        (tmp_path / f"index{index}" / "size").write_text(f"{size}\n")
    (tmp_path / "index9").mkdir()  # unreadable entries are passed over
    (tmp_path / "index9" / "size").write_text("?\n")
    assert ops.last_level_cache_bytes(tmp_path) == 32 * 2**20
    assert ops.last_level_cache_bytes(tmp_path / "missing") == ops.CACHE_FALLBACK_BYTES


def test_pools_run_in_slabs_only_for_large_cpu_activations(monkeypatch):
    monkeypatch.setattr(ops, "last_level_cache_bytes", lambda: 32 * 2**20)  # slabs of 8 MiB
    frame = 64 * 112 * 112 * 4  # MaxPool3d_2a's input in fp32: 3 MiB a frame
    assert ops.pool_slab_frames(torch.empty(1, 64, 32, 112, 112)) == 8 * 2**20 // frame
    assert ops.pool_slab_frames(torch.empty(1, 64, 5, 112, 112)) is None  # at most two slabs: whole
    assert ops.pool_slab_frames(torch.empty(1, 64, 32, 112, 112, device="meta")) is None  # not on the CPU


def test_the_network_pooling_in_slabs_is_exact(monkeypatch):
    model = randomize(InceptionI3d(), seed=3).eval()
    x = torch.rand(1, 3, 24, 64, 64) * 2 - 1
    with torch.inference_mode():
        whole = model(x)
        slabs = []
        monkeypatch.setattr(ops, "last_level_cache_bytes", lambda: 64 * 2**10)  # tiny: every large pool is cut
        real = ops.max_pool_strided
        monkeypatch.setattr(ops, "max_pool_strided", lambda *a, **k: slabs.append(k["slab_frames"]) or real(*a, **k))
        assert torch.equal(model(x), whole)
    assert any(s is not None for s in slabs)


def test_an_inception_modules_1x1_branch_and_narrowest_1x1_run_as_one_matmul(monkeypatch):
    cpu = torch.device("cpu")
    model = prepare(randomize(InceptionI3d(final_endpoint="Mixed_3c"), seed=11), cpu, "fp32")
    x = torch.rand(1, 3, 8, 40, 40, generator=torch.Generator().manual_seed(11)) * 2 - 1
    with torch.inference_mode():
        model.configure_inference(dataclasses.replace(InferenceOptions(), merge_pointwise=False))
        unmerged = model(x)
        model.configure_inference()
        widths: list[int] = []
        real = ops.pointwise_conv
        monkeypatch.setattr(
            ops, "pointwise_conv", lambda x, w, *a, **k: widths.append(w.shape[0]) or real(x, w, *a, **k)
        )
        merged = model(x)
    assert 64 + 16 in widths and 128 + 32 in widths  # Mixed_3b's b0 and b2a, then Mixed_3c's
    assert 16 not in widths and 32 in widths  # no b2a alone; Mixed_3b's b3b has 32 channels
    assert (merged - unmerged).abs().max() <= NETWORK_RTOL * unmerged.abs().max()
    # New parameters are restacked, and a copy stacks its own.
    other = randomize(InceptionI3d(final_endpoint="Mixed_3c"), seed=12)
    model.load_state_dict(other.state_dict())
    with torch.inference_mode():
        expected = other.configure_inference(InferenceOptions.off())(x)
        for got in (model(x), copy.deepcopy(model)(x)):
            assert (got - expected).abs().max() <= NETWORK_RTOL * expected.abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_folding_time_taps_into_channels_moves_inputs_exactly(dtype):
    if not ops.FUSED_RELU or (dtype == torch.bfloat16 and not ops.onednn_bf16()):
        pytest.skip("oneDNN does not run this dtype here")
    g = torch.Generator().manual_seed(13)
    x = (torch.randn((2, 3, 11, 5, 6), generator=g) * 100).to(dtype).contiguous(memory_format=torch.channels_last_3d)
    for kernel, stride, padding in [(7, 2, 0), (7, 2, 3), (3, 1, 1), (2, 2, 0)]:
        got = ops.fold_time(x, kernel, stride, padding)
        padded = F.pad(x, (0, 0, 0, 0, padding, padding))
        out_t = (x.shape[2] + 2 * padding - kernel) // stride + 1
        expected = torch.cat([padded[:, :, k : k + stride * (out_t - 1) + 1 : stride] for k in range(kernel)], dim=1)
        assert got.is_contiguous(memory_format=torch.channels_last_3d)
        assert torch.equal(got, expected), (kernel, stride, padding)
    # The folded convolution: the same products, summed in another order.
    weight = torch.randn((4, 3, 7, 3, 3), generator=g, dtype=torch.float64)
    x64 = torch.randn((1, 3, 13, 8, 8), generator=g, dtype=torch.float64)
    expected = F.conv3d(x64, weight, stride=(2, 1, 1), padding=(3, 1, 1))
    x32 = x64.float().contiguous(memory_format=torch.channels_last_3d)
    folded = F.conv3d(
        ops.fold_time(x32, 7, 2, 3), ops.fold_time_weight(weight.float()), stride=(1, 1, 1), padding=(0, 1, 1)
    )
    # 189 products per output, each exact in float64: float32 sums differ by at most 189 roundings.
    bound = 189 * 2**-24 * F.conv3d(x64.abs(), weight.abs(), stride=(2, 1, 1), padding=(3, 1, 1))
    assert ((folded.double() - expected).abs() <= bound).all()


def test_the_bf16_stem_folds_its_time_taps_and_stays_close(monkeypatch):
    if not ops.onednn_bf16():
        pytest.skip("oneDNN does not run bfloat16 on this CPU")
    cpu = torch.device("cpu")
    # Even sizes pad the stem asymmetrically (the input is padded first); odd ones symmetrically.
    g = torch.Generator().manual_seed(14)
    x = [torch.rand(1, 3, 12, 40, 40, generator=g) * 2 - 1, torch.rand(1, 3, 13, 41, 41, generator=g) * 2 - 1]
    outputs = {}
    folds: list[int] = []
    real = ops.fold_time
    monkeypatch.setattr(ops, "fold_time", lambda x, *a: folds.append(x.shape[1]) or real(x, *a))
    for fold in (False, True):
        model = randomize(InceptionI3d(final_endpoint="Mixed_3b"), seed=14)
        prepare(model, cpu, "bf16", options=dataclasses.replace(InferenceOptions(), fold_time_taps=fold))
        folds.clear()
        with torch.inference_mode(), precision_context(cpu, "bf16"):
            outputs[fold] = [model(clip).float() for clip in x]
        assert folds == ([3, 3] if fold else [])  # the stem alone: the only odd channel count
    # Both round to bf16 at every layer (5 on the longest path, 3 roundings each).
    bound = 5 * 3 * 2**-8
    for folded, plain in zip(outputs[True], outputs[False]):
        assert (folded - plain).abs().max() <= bound * plain.abs().max()


def test_native_bf16_detection(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n")
    assert cpu_has_native_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert not cpu_has_native_bf16(cpuinfo)
    cpuinfo.write_text("Features\t: fp asimd bf16 sve\n")  # Arm
    assert cpu_has_native_bf16(cpuinfo)
    assert not cpu_has_native_bf16(tmp_path / "missing")


def test_bf16_without_native_support_says_so_once(monkeypatch, capsys):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(runtime, "_warned_slow_bf16", False)
    prepare(InceptionI3d(), torch.device("cpu"), "bf16")
    prepare(InceptionI3d(), torch.device("cpu"), "bf16")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bf16 will be slow" in err


@pytest.mark.slow
def test_model_built_and_loaded_in_inference_mode(tmp_path):
    # Parameters made inside torch.inference_mode are inference tensors,
    # which keep no version counter for the folded-weights cache to read.
    first, second = random_weights_file(tmp_path / "a.pt", seed=11), random_weights_file(tmp_path / "b.pt", seed=12)
    x = torch.rand(1, 3, 9, 24, 24, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        want_first, want_second = inception_i3d(weights=first)(x), inception_i3d(weights=second)(x)
    with torch.inference_mode():
        built = InceptionI3d().eval()
        built.load_state_dict(inception_i3d(weights=first).state_dict())
        loaded = inception_i3d(weights=first)
        inside = [built(x), loaded(x)]
    with torch.no_grad():
        outside = [built(x), loaded(x)]
    for got in inside + outside:
        assert (got - want_first).abs().max() <= NETWORK_RTOL * want_first.abs().max()
    with torch.inference_mode():
        built.load_state_dict(inception_i3d(weights=second).state_dict())  # in place, no version to see
        reloaded = built(x)
    assert (reloaded - want_second).abs().max() <= NETWORK_RTOL * want_second.abs().max()


def test_the_precision_flag_offers_every_precision():
    from i3d.flags import PRECISIONS as FLAG_PRECISIONS
    from i3d.runtime import PRECISIONS

    assert FLAG_PRECISIONS == PRECISIONS


def test_placement_resolves_device_and_precision_once(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.Placement.resolve() == runtime.Placement(torch.device("cpu"), "fp32")
    assert runtime.Placement.resolve("cpu", "bf16") == runtime.Placement(torch.device("cpu"), "bf16")
    with pytest.raises(ValueError, match="unknown device 'gpu'; available: cpu"):
        runtime.Placement.resolve("gpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        runtime.Placement.resolve("cpu", "int8")
    for precision in ("fp16", "tf32"):
        with pytest.raises(ValueError, match=f"^precision {precision} needs a CUDA device, not cpu; "):
            runtime.Placement.resolve("cpu", precision)
    with pytest.raises(ValueError, match="needs a CUDA device"):  # a Placement is never invalid
        runtime.Placement(torch.device("cpu"), "fp16")


@pytest.mark.parametrize("command", ["predict", "extract", "fvd"])
def test_the_python_api_names_a_bad_device_in_one_line(command):
    # The CLI's argtypes.device and the API give the same error, before any weights load.
    from i3d.extract import Extractor
    from i3d.fvd.embedding import Embedder
    from i3d.predict import Classifier

    if torch.cuda.device_count() > 7:
        pytest.skip("cuda:7 exists here")
    build = {"predict": Classifier, "extract": Extractor, "fvd": Embedder}[command]
    with pytest.raises(ValueError, match=r"^device 'cuda:7' is not available \(.*\); available: cpu") as err:
        build(device="cuda:7")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="^precision fp16 needs a CUDA device, not cpu"):
        build(device="cpu", precision="fp16")


def test_bf16_without_native_instructions_warns_once_in_the_command_voice(monkeypatch, capsys):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(runtime, "_warned_slow_bf16", False)
    model = InceptionI3d(final_endpoint="Conv3d_1a_7x7")
    for _ in range(2):
        prepare(model, torch.device("cpu"), "bf16")
    err = capsys.readouterr().err
    assert (
        err == "i3d: warning: this CPU has no native bfloat16 instructions: bf16 will be slow (fp32 is faster here)\n"
    )
