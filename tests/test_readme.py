"""The README's Python examples, run as written.

Every fenced ``python`` block of README.md runs on its own, in a fresh
namespace, in a temporary folder holding the files the examples name
(:func:`_write_files`), with a temporary ``I3D_HOME``. Names an example
leaves to the reader (``loader``, ``pairs``) are given by :func:`_globals`.

Weights: ``rgb_scratch`` is linked from the user's cache when it is there
(``I3D_HOME``, filled by ``.ci/run`` or ``i3d weights download``); otherwise
random weights are stored under its name, so that the examples run offline
through the same code (their numbers then mean nothing).

A block that truly cannot run here is preceded in the README by the comment
``<!-- readme-test: skip REASON -->``; this test reports it as skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from i3d import weights as W
from i3d.weights import store
from tests.conftest import randomize

README = Path(__file__).resolve().parents[1] / "README.md"
# Read at import, before any fixture points I3D_HOME elsewhere.
USER_CACHE = W.cache_dir()
SKIP_MARK = re.compile(r"<!--\s*readme-test:\s*skip\s*(.*?)\s*-->\s*\n```python\n", re.S)
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
WEIGHTS = "rgb_scratch"


def python_blocks() -> list:
    """``pytest.param(code, id=line)`` for each block, skipped where the README says so."""
    text = README.read_text(encoding="utf-8")
    skipped = {m.end(): m.group(1) for m in SKIP_MARK.finditer(text)}
    params = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        marks = []
        reason = skipped.get(match.start() + len("```python\n"))
        if reason is not None:
            marks.append(pytest.mark.skip(reason=f"README line {line}: {reason or 'marked skip'}"))
        params.append(pytest.param(match.group(1), id=f"README.md:{line}", marks=marks))
    return params


def _provide_weights(home: Path) -> None:
    entry = W.get_weights(WEIGHTS)
    cached = USER_CACHE / entry.filename
    if not (cached.is_file() and store.sidecar_path(cached).is_file()):
        # Random weights, recorded as the entry's upstream conversion: the
        # cache accepts them, and every loading step runs as for the real ones.
        from i3d.model import InceptionI3d

        state = randomize(InceptionI3d(num_classes=entry.num_classes), seed=0).state_dict()
        store._store(entry, state, home / entry.filename, [f.blob_sha1 for f in entry.files], "random, for tests")
        return
    for path in (cached, store.sidecar_path(cached)):
        (home / path.name).symlink_to(path)  # read only: a failed check replaces the link, not its target


def _write_files(folder: Path) -> None:
    from i3d.fvd.stats import Statistics
    from tests.video.helpers import encode, indexed_frames

    encode(folder / "clip.mp4", indexed_frames(12, height=48, width=64), rate=25)
    gen = np.random.default_rng(0).normal(size=(6, 400))
    Statistics().update(gen).save(folder / "gen.npz")


def _globals() -> dict:
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, 256, size=(2, 8, 32, 40, 3), dtype=np.uint8) for _ in range(4)]
    return {"loader": batches[:2], "pairs": [tuple(batches[:2]), tuple(batches[2:])]}


@pytest.mark.slow
@pytest.mark.parametrize("code", python_blocks())
def test_readme_python_block(code, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("I3D_HOME", str(home))
    _provide_weights(home)
    work = tmp_path / "work"
    work.mkdir()
    _write_files(work)
    monkeypatch.chdir(work)
    namespace = {"__name__": "__readme__", **_globals()}
    exec(compile(code, "README.md", "exec"), namespace)


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 2
