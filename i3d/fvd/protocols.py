"""FVD as each widely used codebase computes it: one :class:`Protocol` per codebase.

FVD numbers from different codebases are not comparable: they differ in the
network, the resize, the value range, which clips and how many videos, the
covariance and the matrix square root. A protocol fixes every one of those
steps as its codebase does (read from its source; see each entry's
``source``), so that a number can be compared with a paper's:

=============  ==========================================================
``reference``  google-research ``frechet_video_distance`` (TF-Hub, tfgan)
``styleganv``  universome/stylegan-v ``src/metrics/frechet_video_distance.py``
               (``fvd2048_16f``; ``--subsample 8`` for ``_128f_subsample8f``)
``videogpt``   wilson1yan/VideoGPT ``scripts/compute_fvd.py``
``cdfvd``      songweige/content-debiased-fvd ``cdfvd/fvd.py`` (I3D model)
``tats``       songweige/TATS ``scripts/sample_vqgan_transformer_short_videos.py``
``junyaohu``   JunyaoHu/common_metrics_on_video_quality ``calculate_fvd.py``
               (its default, ``method='styleganv'``)
=============  ==========================================================

What stays as given: the clips are the caller's (frame rate, order of the
videos); what a codebase's own data loader does before its FVD code (for
example StyleGAN-V's cubic resize of non-square frames to the dataset's
resolution, VideoGPT's resize to 64 or 128 and back through ``uint8``) is the
caller's to do. (cd-fvd's loaders send frames through ``x / 255 * 255`` in
float32 and ``.byte()``, which truncates; for uint8 frames that changes
nothing: float32 gives back every value 0..255 exactly, as the tests check.)

Random draws use NumPy's generator seeded by ``--seed``: the
codebases draw unseeded (StyleGAN-V, in data loader workers) or through
torch's generator, so a single draw is not theirs, but the distribution is;
``--runs`` gives the spread over draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["Protocol", "PROTOCOLS", "PROTOCOL_NAMES", "FORMULAS", "get_protocol", "Role", "ROLES"]

Role = Literal["real", "gen"]
ROLES: tuple[str, ...] = ("real", "gen")
# Resize rules: TF1's resize_bilinear to 224x224 (reference); F.interpolate's
# half-pixel bilinear straight to 224x224 (stretch); F.interpolate to a short
# side of 224, the long side ceil(long * 224 / short), then a centre crop.
Resize = Literal["tf1", "stretch", "short-side-crop"]
# Matrix square roots: the symmetric eigen-decomposition of sqrt(S1) S2 sqrt(S1)
# in float64 (tfgan's identity); scipy.linalg.sqrtm of the product, real part;
# tfgan's SVD-based symmetric root written in torch float32.
SquareRoot = Literal["symmetric", "sqrtm", "svd-float32"]
# Clip sampling: the first T frames; a uniformly random start per video
# (StyleGAN-V's datasets); a uniformly random clip among all clips of all
# videos (torchvision's VideoClips behind a shuffled loader, VideoGPT).
Clips = Literal["first", "random-start", "random-clip"]
# The value formulas of the codebases, applied to float32 frames in this order
# of operations (torch evaluates left to right, each step rounded to float32).
FORMULAS: tuple[str, ...] = ("x", "x/255", "2*x/255-1", "x/255*2-1", "x-0.5", "(x-0.5)*2")


@dataclass(frozen=True)
class Protocol:
    """Every step of one codebase's FVD.

    Attributes:
        name: ``--protocol`` name.
        source: the codebase and file it reproduces.
        weights: the registry name of the network's weights.
        bn_eps: BatchNorm epsilon of the codebase's network (DeepMind's and
            TF-Hub's 1e-3; the PyTorch copies in VideoGPT, TATS and cd-fvd
            1e-5 with the same tensors).
        resize: see :data:`Resize`.
        before_resize, after_resize: the value formulas applied to the
            float32 frames before and after the resize, written as the
            codebase writes them (see :data:`FORMULAS`; the order of the
            operations moves float32 round-off). The network gets ``[-1, 1]``
            from every codebase but VideoGPT, which feeds ``[-0.5, 0.5]``.
        ddof: covariance normalised by ``N - ddof``.
        square_root: see :data:`SquareRoot`.
        gen_first: the square root's product is ``S_gen S_real`` (the
            codebase's order; it moves only round-off).
        clips: sampling per role, see :data:`Clips`.
        max_videos: per role, at most this many videos (the first ones, or
            drawn, per ``clips``); ``None``: all.
        repeat: per role, cycle through the videos until there are
            ``max_videos`` (cd-fvd's fake set).
        num_frames: the codebase's clip length (``None``: all frames).
    """

    name: str
    source: str
    weights: str
    bn_eps: float
    resize: Resize
    before_resize: str
    after_resize: str
    ddof: int
    square_root: SquareRoot
    gen_first: bool
    clips: dict[str, Clips]
    max_videos: dict[str, int | None]
    repeat: dict[str, bool]
    num_frames: int | None

    @property
    def draws(self) -> bool:
        """Whether the protocol draws clips at random (``--runs`` applies)."""
        return any(c != "first" for c in self.clips.values())

    def embedding_settings(self) -> dict:
        """What the embeddings depend on (compared when statistics meet)."""
        return {
            "resize": self.resize,
            "before_resize": self.before_resize,
            "after_resize": self.after_resize,
            "bn_eps": self.bn_eps,
        }


_BOTH_FIRST: dict[str, Clips] = {"real": "first", "gen": "first"}
_ALL: dict[str, int | None] = {"real": None, "gen": None}
_NO_REPEAT = {"real": False, "gen": False}
# StyleGAN-V's metrics fvd2048_*: 2048 real and 2048 generated videos.
STYLEGANV_VIDEOS = 2048
# VideoGPT's compute_fvd.py: one batch of 256 clips per trial.
VIDEOGPT_VIDEOS = 256
# TATS's sampling script: the first 2048 real clips of a shuffled loader, 2048 samples.
TATS_VIDEOS = 2048
# cd-fvd's default n_fake; n_real is "full".
CDFVD_FAKE_VIDEOS = 2048
# JunyaoHu's per-length curve (only_final=False) starts at 10 frames.
CURVE_FIRST = 10
# The usual clip length (StyleGAN-V's 16f, VideoGPT's and cd-fvd's sequence_length).
SIXTEEN_FRAMES = 16

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="reference",
            source="google-research/google-research frechet_video_distance (TF-Hub i3d-kinetics-400, tfgan)",
            weights="rgb_scratch",
            bn_eps=1e-3,
            resize="tf1",
            before_resize="x",
            after_resize="2*x/255-1",
            ddof=1,
            square_root="symmetric",
            gen_first=False,
            clips=_BOTH_FIRST,
            max_videos=_ALL,
            repeat=_NO_REPEAT,
            num_frames=None,
        ),
        Protocol(
            name="styleganv",
            source="universome/stylegan-v src/metrics/frechet_video_distance.py, metric_utils.py (fvd2048_16f)",
            weights="rgb_scratch",  # i3d_torchscript.pt: its author's port of TF-Hub's network
            bn_eps=1e-3,
            resize="stretch",
            before_resize="x/255*2-1",
            after_resize="x",
            ddof=0,
            square_root="sqrtm",
            gen_first=True,
            clips={"real": "random-start", "gen": "first"},
            max_videos={"real": STYLEGANV_VIDEOS, "gen": STYLEGANV_VIDEOS},
            repeat=_NO_REPEAT,
            num_frames=SIXTEEN_FRAMES,
        ),
        Protocol(
            name="videogpt",
            source="wilson1yan/VideoGPT scripts/compute_fvd.py, videogpt/fvd/fvd.py",
            weights="i3d_pretrained_400",
            bn_eps=1e-5,
            resize="short-side-crop",
            before_resize="x/255",
            after_resize="x-0.5",
            ddof=1,
            square_root="svd-float32",
            gen_first=True,
            clips={"real": "random-clip", "gen": "random-clip"},
            max_videos={"real": VIDEOGPT_VIDEOS, "gen": VIDEOGPT_VIDEOS},
            repeat=_NO_REPEAT,
            num_frames=SIXTEEN_FRAMES,
        ),
        Protocol(
            name="cdfvd",
            source="songweige/content-debiased-fvd cdfvd/fvd.py, third_party/i3d/utils.py (model='i3d')",
            weights="i3d_pretrained_400",
            bn_eps=1e-5,
            resize="stretch",
            before_resize="x",
            after_resize="2*x/255-1",
            ddof=0,
            square_root="sqrtm",
            gen_first=False,
            clips=_BOTH_FIRST,
            max_videos={"real": None, "gen": CDFVD_FAKE_VIDEOS},
            repeat={"real": False, "gen": True},
            num_frames=None,
        ),
        Protocol(
            name="tats",
            source="songweige/TATS scripts/sample_vqgan_transformer_short_videos.py, tats/fvd/fvd.py",
            weights="i3d_pretrained_400",
            bn_eps=1e-5,
            resize="stretch",
            before_resize="x",
            after_resize="2*x/255-1",
            ddof=1,
            square_root="svd-float32",
            gen_first=True,  # frechet_distance(fake_embeddings, real_embeddings)
            clips={"real": "random-clip", "gen": "first"},  # a shuffled VideoData loader; the samples as made
            max_videos={"real": TATS_VIDEOS, "gen": TATS_VIDEOS},
            repeat=_NO_REPEAT,
            num_frames=SIXTEEN_FRAMES,
        ),
        Protocol(
            name="junyaohu",
            source="JunyaoHu/common_metrics_on_video_quality calculate_fvd.py, fvd/styleganv/fvd.py",
            weights="rgb_scratch",  # the same i3d_torchscript.pt as StyleGAN-V, rescale and resize off
            bn_eps=1e-3,
            resize="short-side-crop",
            before_resize="x/255",
            after_resize="(x-0.5)*2",
            ddof=1,
            square_root="sqrtm",
            gen_first=False,  # frechet_distance(feats1, feats2) calls videos1 "fake": S_1 S_2 = S_real S_gen
            clips=_BOTH_FIRST,
            max_videos=_ALL,
            repeat=_NO_REPEAT,
            num_frames=None,
        ),
    )
}
PROTOCOL_NAMES: tuple[str, ...] = tuple(PROTOCOLS)


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown FVD protocol {name!r}; one of {', '.join(PROTOCOL_NAMES)}") from None


def short_side_size(height: int, width: int, side: int) -> tuple[int, int]:
    """VideoGPT's ``preprocess``: the short side to ``side``, the other ``ceil(other * side / short)``
    in Python floats (a square frame takes the second branch, as there)."""
    scale = side / min(height, width)
    if height < width:
        return side, math.ceil(width * scale)
    return math.ceil(height * scale), side
