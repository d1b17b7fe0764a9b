"""Each FVD protocol against that codebase's pipeline, written again here from its source.

The codebases' steps, as their sources write them (StyleGAN-V's TorchScript
is binary: its steps are those its author states, fvd-comparison#4):

* preprocessing: :func:`their_input`;
* the network: :func:`tests.reference.reference_forward` with the
  codebase's BatchNorm epsilon, logits averaged over time;
* the distance: :func:`their_distance`.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from i3d.cli import main
from i3d.errors import VideoError
from i3d.fvd.distance import frechet_distance
from i3d.fvd.embedding import Embedder, preprocess_videos
from i3d.fvd.inputs import list_videos, read_clip
from i3d.fvd.protocols import PROTOCOLS, get_protocol
from i3d.fvd.sampling import plan_clips
from i3d.fvd.stats import Statistics
from i3d.weights import load_state_dict_file
from tests.fvd.conftest import tiny_videos
from tests.reference import reference_forward

NAMES = sorted(PROTOCOLS)
EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)


def fail(message: str) -> None:
    raise AssertionError(message)


# ---- the codebases' steps, from their sources -------------------------------------------


def _short_side_crop(video: torch.Tensor, resolution: int = 224) -> torch.Tensor:
    """VideoGPT's ``preprocess`` after the scaling: ``video`` (T, C, H, W) float."""
    t, c, h, w = video.shape
    scale = resolution / min(h, w)
    if h < w:
        target_size = (resolution, math.ceil(w * scale))
    else:
        target_size = (math.ceil(h * scale), resolution)
    video = F.interpolate(video, size=target_size, mode="bilinear", align_corners=False)
    t, c, h, w = video.shape
    w_start, h_start = (w - resolution) // 2, (h - resolution) // 2
    return video[:, :, h_start : h_start + resolution, w_start : w_start + resolution]


def their_input(name: str, videos: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, T, H, W, 3)`` -> what the codebase's network gets, ``(N, 3, T, 224, 224)``."""
    u8 = torch.from_numpy(videos)
    if name == "styleganv":  # uint8 [B, C, T, H, W] into i3d_torchscript.pt with rescale=True, resize=True
        x = u8.permute(0, 4, 1, 2, 3).float()
        x = x / 255 * 2 - 1
        return F.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
    if name == "videogpt":  # videogpt/data.py preprocess: [0, 1], short side, crop, minus 0.5
        out = []
        for video in u8:
            video = video.permute(0, 3, 1, 2).float() / 255.0
            out.append(_short_side_crop(video).permute(1, 0, 2, 3).contiguous() - 0.5)
        return torch.stack(out)
    if name in ("cdfvd", "tats"):  # cd-fvd: load_videos(.npy), compute_real_stats; both: preprocess_i3d
        back = videos
        if name == "cdfvd":  # /255., *255, .byte()
            batch = (u8 / 255.0).permute(0, 4, 1, 2, 3)  # b t h w c -> b c t h w
            back = (batch * 255).permute(0, 2, 3, 4, 1).byte().numpy()
        b, t, h, w, c = back.shape
        frames = torch.FloatTensor(back).flatten(end_dim=1).permute(0, 3, 1, 2).contiguous()
        resized = F.interpolate(frames, size=(224, 224), mode="bilinear", align_corners=False)
        output = resized.view(b, t, c, 224, 224).transpose(1, 2).contiguous()
        return 2.0 * output / 255.0 - 1
    if name == "junyaohu":  # videos in [0, 1], BCTHW; preprocess_single per video (CTHW as a 4-D batch)
        x = (u8.float() / 255).permute(0, 4, 1, 2, 3)
        out = []
        for video in x:
            c, t, h, w = video.shape
            scale = 224 / min(h, w)
            size = (224, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), 224)
            video = F.interpolate(video, size=size, mode="bilinear", align_corners=False)
            hs, ws = (video.shape[2] - 224) // 2, (video.shape[3] - 224) // 2
            out.append(((video[:, :, hs : hs + 224, ws : ws + 224] - 0.5) * 2).contiguous())
        return torch.stack(out)
    raise AssertionError(name)


def _mean_cov_feature_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """StyleGAN-V's (and cd-fvd's) FeatureStats: float32 features, float64 sums, covariance over N."""
    x64 = np.asarray(x, dtype=np.float32).astype(np.float64)
    mean = x64.sum(axis=0) / len(x64)
    cov = x64.T @ x64 / len(x64)
    return mean, cov - np.outer(mean, mean)


def _tfgan_torch_float32(x1: torch.Tensor, x2: torch.Tensor) -> float:
    """VideoGPT's (and TATS's) ``frechet_distance(x1, x2)`` (x1: fake), float32."""

    def cov(m: torch.Tensor) -> torch.Tensor:
        m = m.t().clone()
        fact = 1.0 / (m.size(1) - 1)
        m -= torch.mean(m, dim=1, keepdim=True)
        return fact * m.matmul(m.t()).squeeze()

    def root(mat: torch.Tensor) -> torch.Tensor:
        u, s, v = torch.svd(mat)
        si = torch.where(s < 1e-10, s, torch.sqrt(s))
        return torch.matmul(torch.matmul(u, torch.diag(si)), v.t())

    m, m_w = x1.mean(dim=0), x2.mean(dim=0)
    sigma, sigma_w = cov(x1), cov(x2)
    sqrt_sigma = root(sigma)
    trace_root = torch.trace(root(torch.matmul(sqrt_sigma, torch.matmul(sigma_w, sqrt_sigma))))
    return float(torch.trace(sigma + sigma_w) - 2.0 * trace_root + torch.sum((m - m_w) ** 2))


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    """``scipy.linalg.sqrtm(matrix, disp=False)[0]``, as the codebases call it (``disp`` is deprecated in SciPy 1.17)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scipy.linalg.sqrtm(matrix)


def their_distance(name: str, real: np.ndarray, gen: np.ndarray) -> float:
    """The codebase's Fréchet distance of float32 embeddings ``(N, D)``."""
    if name == "styleganv":
        mu_real, sigma_real = _mean_cov_feature_stats(real)
        mu_gen, sigma_gen = _mean_cov_feature_stats(gen)
        m = np.square(mu_gen - mu_real).sum()
        s = _sqrtm(np.dot(sigma_gen, sigma_real))
        return float(np.real(m + np.trace(sigma_gen + sigma_real - s * 2)))
    if name == "cdfvd":
        mu_fake, sigma_fake = _mean_cov_feature_stats(gen)
        mu_real, sigma_real = _mean_cov_feature_stats(real)
        m = np.square(mu_real - mu_fake).sum()
        s = _sqrtm(np.dot(sigma_real, sigma_fake))
        return float(np.real(m + np.trace(sigma_fake + sigma_real - s * 2)))
    if name == "junyaohu":  # frechet_distance(feats1=videos1, feats2=videos2): videos1 called "fake"
        feats_fake, feats_real = np.asarray(real, np.float64), np.asarray(gen, np.float64)
        mu_gen, sigma_gen = feats_fake.mean(axis=0), np.cov(feats_fake, rowvar=False)
        mu_real, sigma_real = feats_real.mean(axis=0), np.cov(feats_real, rowvar=False)
        m = np.square(mu_gen - mu_real).sum()
        s = _sqrtm(np.dot(sigma_gen, sigma_real))
        return float(np.real(m + np.trace(sigma_gen + sigma_real - s * 2)))
    if name in ("videogpt", "tats"):  # frechet_distance(fake_embeddings, real_embeddings)
        return _tfgan_torch_float32(torch.from_numpy(np.float32(gen)), torch.from_numpy(np.float32(real)))
    raise AssertionError(name)


def distance_tolerance(name: str, real: np.ndarray, gen: np.ndarray) -> float:
    """How far two evaluations of one formula may differ, from the arithmetic.

    VideoGPT's float32: each of the D eigenvalues of its roots carries about
    ``D eps32`` of the covariances' scale. scipy's ``sqrtm``: the product's
    eigenvalues that are zero in exact arithmetic (fewer videos than
    dimensions) come out at about ``eps64`` of the scale, and their square
    roots, up to D of them, enter the trace. The symmetric root zeroes those.
    """
    scale = float(np.trace(np.cov(real, rowvar=False)) + np.trace(np.cov(gen, rowvar=False)))
    scale += float(np.sum((real.mean(0) - gen.mean(0)) ** 2))
    dim = real.shape[1]
    if name in ("videogpt", "tats"):
        return dim * dim * EPS32 * scale
    sqrtm_zeros = dim * math.sqrt(EPS64 * scale) if name != "reference" else 0.0
    return 1e-10 * scale + sqrtm_zeros


# ---- fast checks of each step --------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in NAMES if n != "reference"])
@pytest.mark.parametrize("size", [(37, 50), (50, 37), (40, 40), (224, 224), (300, 240)])
def test_preprocessing_follows_the_codebase(name, size):
    videos = np.random.default_rng(sum(size)).integers(0, 256, size=(2, 2, *size, 3), dtype=np.uint8)
    ours = preprocess_videos(torch.from_numpy(videos), protocol=name)
    theirs = their_input(name, videos)
    assert ours.shape == theirs.shape == (2, 3, 2, 224, 224) and ours.dtype == torch.float32
    if name == "styleganv":
        # trilinear with the time scale 1 is bilinear, summed in another order: a few float32 ulps of [-1, 1]
        torch.testing.assert_close(ours, theirs, rtol=0, atol=16 * EPS32)
    else:
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_value_ranges_and_the_byte_round_trip():
    # cd-fvd's loaders compute uint8 / 255. * 255 in float32 and truncate with .byte():
    # exact for every uint8 value, so the protocol leaves that step out.
    values = torch.arange(256, dtype=torch.uint8)
    assert torch.equal((values / 255.0 * 255).byte(), values)
    flat = torch.full((1, 1, 224, 224, 3), 255, dtype=torch.uint8)
    assert preprocess_videos(flat, protocol="videogpt").max() == 0.5  # VideoGPT feeds [-0.5, 0.5]
    for name in ("reference", "styleganv", "junyaohu"):
        assert preprocess_videos(flat, protocol=name).max() == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_distance_follows_the_codebase(name):
    rng = np.random.default_rng(3)
    dim = 12
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    real = (rng.normal(size=(60, dim)) @ mix * 3 + 1).astype(np.float32)
    gen = (rng.normal(size=(45, dim)) @ mix * 2 + rng.normal(size=dim)).astype(np.float32)
    ours = frechet_distance(Statistics().update(real), Statistics().update(gen), name)
    if name == "reference":
        want = frechet_distance(real, gen)  # tfgan's, tested against tfgan itself in test_distance.py
    else:
        want = their_distance(name, real, gen)
    assert abs(ours - want) <= distance_tolerance(name, real, gen)
    if name != "reference":  # the protocols really differ (N vs N - 1, float32)
        assert ours != frechet_distance(real, gen)


def test_clip_sampling(tmp_path):
    np.save(tmp_path / "a.npy", tiny_videos(2, seed=0, frames=5, size=(4, 4)))
    np.save(tmp_path / "b.npy", tiny_videos(1, seed=1, frames=9, size=(4, 4)))
    items = list_videos([str(tmp_path / "a.npy"), str(tmp_path / "b.npy")], on_error=fail)
    # videogpt: every clip of every video, drawn without replacement (2 + 2 + 6 of 4 frames).
    plan = plan_clips(items, get_protocol("videogpt"), "real", 4, seed=1, on_error=fail)
    drawn = sorted((i.source[-5], i.row, i.start) for i in plan)
    assert drawn == [("a", r, s) for r in (0, 1) for s in (0, 1)] + [("b", 0, s) for s in range(6)]
    assert [i.index for i in plan] == list(range(10))
    assert len(plan_clips(items, get_protocol("videogpt"), "real", 4, seed=1, max_videos=3, on_error=fail)) == 3
    # styleganv real: a random start per video, seeded, the last frame inside; step 2 needs 2 * 2 frames.
    styleganv = get_protocol("styleganv")
    starts = set()
    for seed in range(40):
        plan = plan_clips(items, styleganv, "real", 2, seed=seed, step=2, on_error=fail)
        clip = read_clip(plan[2], 2)  # b.npy: 9 frames, starts 0..9 - 4 + 2 - 1 = 6
        start = int(np.flatnonzero((np.load(tmp_path / "b.npy")[0] == clip[0]).all(axis=(1, 2, 3)))[0])
        np.testing.assert_array_equal(clip[1], np.load(tmp_path / "b.npy")[0, start + 2])
        starts.add(start)
        assert read_clip(plan[2], 2).tobytes() == clip.tobytes()  # the same draw again
    assert starts == set(range(7))
    # ... the generated side from the first frame; too short videos are left out before the first N count.
    said: list[str] = []
    plan = plan_clips(items, styleganv, "gen", 3, step=2, max_videos=1, on_error=said.append)
    assert [(i.source.endswith("b.npy"), i.start) for i in plan] == [(True, 0)]
    assert len(said) == 2 and said[0].endswith("a.npy[0]: has 5 frames, fewer than the 6 a clip needs")
    # cdfvd: the generated side cycles through the videos up to its count.
    plan = plan_clips(items, get_protocol("cdfvd"), "gen", None, max_videos=7, on_error=fail)
    assert [i.row for i in plan] == [0, 1, 0, 0, 1, 0, 0] and [i.index for i in plan] == list(range(7))
    assert len(plan_clips(items, get_protocol("cdfvd"), "real", None, on_error=fail)) == 3


def test_a_clip_too_short_for_its_step_is_named(tmp_path):
    np.save(tmp_path / "a.npy", tiny_videos(1, seed=0, frames=5, size=(4, 4)))
    (item,) = plan_clips(
        list_videos([str(tmp_path / "a.npy")], fail), get_protocol("styleganv"), "gen", 3, step=2, on_error=fail
    )
    with pytest.raises(VideoError, match=r"a\.npy\[0\]: has 5 frames, fewer than the 6 needed for 3 at step 2"):
        read_clip(item, 3)


def test_protocols_do_not_mix(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(12, 5))
    for name, protocol in (("a", "reference"), ("b", "styleganv")):
        Statistics(meta={"weights": "w", "protocol": protocol}).update(x + len(name)).save(tmp_path / f"{name}.npz")
    a, b = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
    assert main(["fvd", a, b]) == 1
    assert capsys.readouterr().err.strip() == (
        "i3d fvd distance: error: REAL was made with the reference protocol and GEN with styleganv; "
        "protocols do not mix"
    )
    assert main(["fvd", a, a, "--protocol", "videogpt"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"i3d fvd distance: error: {a} was made with the reference protocol, not --protocol videogpt; "
        "protocols do not mix"
    )
    assert main(["fvd", "merge", a, b, "--out", str(tmp_path / "ab.npz")]) == 1
    assert "cannot merge statistics made differently" in capsys.readouterr().err


# ---- end to end ------------------------------------------------------------------------------


def their_embeddings(name: str, videos: np.ndarray, weights) -> np.ndarray:
    state = load_state_dict_file(weights)
    eps = 1e-5 if name in ("videogpt", "cdfvd", "tats") else 1e-3
    with torch.no_grad():
        logits = reference_forward(state, their_input(name, videos), eps=eps)["Logits"]  # (N, 400, T')
    return logits.mean(dim=2).numpy()  # float32, as the codebases keep them


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if n != "reference"])
def test_the_command_computes_the_codebase_s_fvd(name, tmp_path, capsys, fvd_weights):
    # Clips of exactly 2 frames: the random starts are 0, every video holds one clip.
    real, gen = tiny_videos(4, seed=11, frames=2), tiny_videos(3, seed=12, frames=2, high=160)
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "gen.npy", gen)
    argv = ["fvd", str(tmp_path / "real.npy"), str(tmp_path / "gen.npy"), "--protocol", name, "--num-frames", "2"]
    argv += ["--weights", str(fvd_weights), "--device", "cpu", "--json", "--quiet", "--max-videos", "4"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"] == name and result["n_real"] == 4 and result["preprocess"]["size"] == 224
    # cd-fvd repeats the generated videos up to its count: 0, 1, 2, 0.
    gen_clips = gen[[0, 1, 2, 0]] if name == "cdfvd" else gen
    assert result["n_gen"] == len(gen_clips)

    theirs_real, theirs_gen = (their_embeddings(name, v, fvd_weights) for v in (real, gen_clips))
    embedder = Embedder(fvd_weights, protocol=name, device="cpu")
    ours_real, ours_gen = (embedder(v).numpy() for v in (real, gen_clips))
    for ours, theirs in ((ours_real, theirs_real), (ours_gen, theirs_gen)):
        # float32 convolutions in another order (fast path, oneDNN) than the functional network
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5 * np.abs(theirs).max())
    want = their_distance(name, ours_real, ours_gen)
    assert abs(result["fvd"] - want) <= distance_tolerance(name, ours_real, ours_gen)


@pytest.mark.slow
def test_i3d_pretrained_400_layout_loads(tmp_path):
    """VideoGPT's convert_tf_pretrained.py writes TF-Hub's variables under the port's names,
    BatchNorm scale 1 (Sonnet has none), no ``num_batches_tracked``: that file loads as is."""
    from i3d.model import InceptionI3d
    from i3d.weights import get_weights, load_pretrained

    state = {
        k: torch.ones_like(v) if k.endswith("bn.weight") else torch.randn(v.shape) * 0.01
        for k, v in InceptionI3d().state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    state = {k: v.abs() + 0.5 if k.endswith("running_var") else v for k, v in state.items()}
    torch.save(state, tmp_path / "i3d_pretrained_400.pt")
    model, *_ = load_pretrained(tmp_path / "i3d_pretrained_400.pt", in_channels=3, progress=False)
    torch.testing.assert_close(model.state_dict()["Mixed_5c.b3b.bn.running_var"], state["Mixed_5c.b3b.bn.running_var"])
    entry = get_weights("i3d_pretrained_400")
    assert entry.format == "pt" and entry.files[0].blob_sha1 == "a867b87ac3a9097d200598b1d48a1b890d8ec744"
    assert get_protocol("videogpt").weights == get_protocol("cdfvd").weights == entry.name


def test_unreachable_i3d_pretrained_400_points_to_rgb_scratch(tmp_path, capsys, monkeypatch):
    from i3d import weights as W
    from i3d.errors import WeightsError

    def offline(weights, **kwargs):
        raise WeightsError(f"{weights}: could not download (offline)")

    monkeypatch.setattr(W, "load_pretrained", offline)
    np.save(tmp_path / "v.npy", tiny_videos(2, seed=0, frames=1, size=(4, 4)))
    assert main(["fvd", str(tmp_path / "v.npy"), str(tmp_path / "v.npy"), "--protocol", "cdfvd"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("i3d fvd distance: error: i3d_pretrained_400: could not download (offline); ")
    assert err.endswith("--weights rgb_scratch runs this protocol with them") and "\n" not in err


def test_a_statistics_file_of_the_wrong_side_is_refused(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(12, 5))
    clips = {"role": "real", "sampling": "random-start", "step": 1, "max_videos": 2048, "repeat": False, "seed": 0}
    meta = {"weights": "w", "protocol": "styleganv", "clips": clips}
    Statistics(meta=meta).update(x).save(tmp_path / "real.npz")
    Statistics(meta=meta).update(x + 1).save(tmp_path / "gen.npz")
    assert main(["fvd", str(tmp_path / "real.npz"), str(tmp_path / "gen.npz")]) == 1
    assert capsys.readouterr().err.strip() == (
        f"i3d fvd distance: error: {tmp_path / 'gen.npz'} holds real clips (`i3d fvd stats --role real`), given as "
        "GEN: the styleganv protocol takes gen clips differently; make it with --role gen"
    )
    gen_meta = {**meta, "clips": {**clips, "role": "gen", "sampling": "first", "seed": None}}
    Statistics(meta=gen_meta).update(x + 1).save(tmp_path / "gen.npz")
    assert main(["fvd", str(tmp_path / "real.npz"), str(tmp_path / "gen.npz")]) == 0
