"""Downloads: resumed, verified, refused when wrong, offline."""

from __future__ import annotations

import os

import pytest

from i3d import weights as W
from i3d.errors import WeightsError


def test_download_success_and_reverify(server, tmp_path):
    data = os.urandom(3 * W.DOWNLOAD_BLOCK + 17)
    remote = server.add("/models/a.pt", data)
    dest = tmp_path / "a.pt"
    assert W.download(remote, dest, progress=False).read_bytes() == data
    assert not dest.with_name("a.pt.partial").exists()
    n = len(server.requests)
    W.download(remote, dest, progress=False)  # cached and verified: no request
    assert len(server.requests) == n
    dest.write_bytes(data[:-1] + b"x")  # corrupted in the cache: fetched again
    assert W.download(remote, dest, progress=False).read_bytes() == data


def test_download_truncated_then_resumed(server, tmp_path):
    data = os.urandom(2 * W.DOWNLOAD_BLOCK)
    remote = server.add("/b.bin", data)
    dest = tmp_path / "b.bin"
    server.mode = "truncate"
    with pytest.raises(WeightsError, match="place that file at"):
        W.download(remote, dest, progress=False)
    partial = dest.with_name("b.bin.partial")
    assert not dest.exists() and 0 < partial.stat().st_size < len(data)
    server.mode = "ok"
    assert W.download(remote, dest, progress=False).read_bytes() == data
    assert server.requests[-1][1] == f"bytes={len(data) // 2}-"  # resumed, not restarted


def test_download_server_ignoring_range(server, tmp_path):
    data = os.urandom(1000)
    remote = server.add("/c.bin", data)
    dest = tmp_path / "c.bin"
    dest.with_name("c.bin.partial").write_bytes(b"stale")
    server.mode = "no-range"
    assert W.download(remote, dest, progress=False).read_bytes() == data


def test_download_wrong_hash(server, tmp_path):
    remote = server.add("/d.bin", b"payload")
    bad = W.RemoteFile(remote.url, "0" * 40)
    with pytest.raises(WeightsError, match="expected 0000"):
        W.download(bad, tmp_path / "d.bin", progress=False)
    assert not (tmp_path / "d.bin").exists() and not (tmp_path / "d.bin.partial").exists()


def test_download_server_error_and_offline(server, tmp_path):
    remote = server.add("/e.bin", b"payload")
    server.mode = "error"
    with pytest.raises(WeightsError, match=r"HTTP 500.*place that file at .*e\.bin \(git blob sha1"):
        W.download(remote, tmp_path / "e.bin", progress=False)
    offline = W.RemoteFile("http://127.0.0.1:9/nothing.bin", remote.blob_sha1)  # port 9: nothing listens
    with pytest.raises(WeightsError, match="could not download"):
        W.download(offline, tmp_path / "f.bin", progress=False)
