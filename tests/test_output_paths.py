"""What an output may replace: a regular file or nothing, for every command.

A device node (``mknod c 1 3``, the ``/dev/null`` of this folder), a FIFO,
a socket, a folder or a symbolic link given as an output is refused in one
line naming it, before any work; the node stays a device, the link stays a
link and its target keeps its content. Tests that need ``mknod`` skip where
it is not permitted (unprivileged users).
"""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import numpy as np
import pytest

from i3d.atomic import OutputError, atomic_dir, atomic_path, check_output_file, open_atomic
from i3d.cli import main
from i3d.extract import verify_outputs
from tests.conftest import random_weights_file

NULL_DEVICE = (1, 3)  # major, minor of /dev/null
TARGET_TEXT = "the link's target, untouched\n"


def device_node(path: Path) -> Path:
    """A character device like /dev/null at ``path``; skips where mknod is not permitted."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(*NULL_DEVICE))
    except (PermissionError, AttributeError, OSError) as err:
        pytest.skip(f"cannot make a device node here ({err})")
    return path


def still_device(path: Path) -> bool:
    mode = os.lstat(path).st_mode
    return stat.S_ISCHR(mode) and os.major(os.lstat(path).st_rdev) == NULL_DEVICE[0]


def symlink(path: Path) -> Path:
    """A link at ``path`` to a file holding :data:`TARGET_TEXT`."""
    target = path.with_name(path.name + ".target")
    target.write_text(TARGET_TEXT)
    path.symlink_to(target)
    return path


def link_intact(path: Path) -> bool:
    return path.is_symlink() and path.resolve().read_text() == TARGET_TEXT


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def unix_socket(path: Path) -> Path:
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
    except OSError as err:  # e.g. a path over the 108 bytes AF_UNIX takes
        pytest.skip(f"cannot bind a socket here ({err})")
    finally:
        server.close()
    return path


def run(argv: list[str]) -> int:
    """``i3d ARGV``'s exit status; usage errors (2) exit through argparse."""
    try:
        return main(argv)
    except SystemExit as done:
        return int(done.code)


def one_error_line(err: str, path: Path, what: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0] and what in lines[0] and ": error: " in lines[0], lines[0]


# ---- the rule itself (i3d.atomic) ----------------------------------------------------


@pytest.mark.parametrize(
    "make, what",
    [
        (device_node, "character device"),
        (fifo, "FIFO"),
        (unix_socket, "socket"),
        (lambda p: (p.mkdir(), p)[1], "folder"),
        (symlink, "symbolic link"),
    ],
    ids=["device", "fifo", "socket", "folder", "symlink"],
)
@pytest.mark.parametrize("writer", ["open_atomic", "atomic_path"])
def test_only_regular_files_or_new_paths_are_replaced(tmp_path, make, what, writer):
    path = make(tmp_path / "out.bin")
    before = os.lstat(path)
    with pytest.raises(OutputError, match=what) as caught:
        with open_atomic(path, binary=True) if writer == "open_atomic" else atomic_path(path) as f:
            raise AssertionError(f"allowed to write {f}")
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    after = os.lstat(path)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert not list(tmp_path.glob(".*.tmp"))
    if what == "symbolic link":
        assert link_intact(path)


def test_regular_files_and_new_paths_are_written(tmp_path):
    (tmp_path / "old.txt").write_text("old")
    for path in (tmp_path / "new.txt", tmp_path / "old.txt"):
        with open_atomic(path) as f:
            f.write("new")
        assert path.read_text() == "new"


def test_a_folder_output_replaces_only_a_folder(tmp_path):
    with pytest.raises(OutputError, match="symbolic link"):
        with atomic_dir(symlink(tmp_path / "frames")):
            pass
    with pytest.raises(OutputError, match="character device"):
        with atomic_dir(device_node(tmp_path / "dev")):
            pass
    (tmp_path / "old").mkdir()
    with atomic_dir(tmp_path / "old") as tmp:
        (tmp / "a").write_text("x")
    assert (tmp_path / "old" / "a").read_text() == "x"


def test_check_output_file_names_a_missing_folder(tmp_path):
    with pytest.raises(OutputError, match=f"its folder {tmp_path / 'nodir'} does not exist"):
        check_output_file(tmp_path / "nodir" / "x.npz")


def test_the_output_lock_never_follows_a_link(tmp_path):
    from i3d.atomic import OutputLock

    target = tmp_path / "elsewhere"
    (tmp_path / ".out.lock").symlink_to(target)
    with pytest.raises(OSError):
        OutputLock(tmp_path / "out").acquire()
    assert not target.exists()
    OutputLock(tmp_path / "out").clear_stale()  # nor removes it
    assert (tmp_path / ".out.lock").is_symlink() and not target.exists()


def test_a_dead_owners_lock_is_cleared_and_a_live_ones_kept(tmp_path):
    from i3d.atomic import OutputLock

    out = tmp_path / "out"
    OutputLock(out).clear_stale()  # no lock file: nothing to do, nothing made
    assert list(tmp_path.iterdir()) == []
    (tmp_path / ".out.lock").touch()  # a killed owner's: the kernel dropped its lock
    OutputLock(out).clear_stale()
    assert list(tmp_path.iterdir()) == []
    live = OutputLock(out)
    assert live.acquire()
    OutputLock(out).clear_stale()  # another open file: flock refuses it as it would another process
    assert (tmp_path / ".out.lock").exists()
    live.release()
    assert list(tmp_path.iterdir()) == []


def test_charades_submission_refuses_a_device(tmp_path):
    from i3d.charades.submission import write_classification

    node = device_node(tmp_path / "submission.txt")
    with pytest.raises(OutputError, match="character device"):
        write_classification(node, {"A": np.zeros(157)})
    assert still_device(node)


# ---- every command that takes an output file: refused when parsed, before any work ----------


def _commands(tmp: Path, out: Path) -> dict[str, list[str]]:
    """Each command writing ``out``; its inputs need not exist: ``out`` is refused first."""
    missing = str(tmp / "missing")
    return {
        "predict": ["predict", missing, "--out", str(out)],
        "fvd stats": ["fvd", "stats", missing, "--num-frames", "16", "--out", str(out)],
        "fvd merge": ["fvd", "merge", missing, "--out", str(out)],
        "convert": ["convert", missing + ".pt", str(out)],
        "eval timeline": ["eval", "timeline", "--gt", missing, "--pred", missing, "--video", "A", "--out", str(out)],
        "eval classify --plot": ["eval", "classify", "--gt", missing, "--pred", missing, "--plot", str(out)],
        "eval localize --plot": ["eval", "localize", "--gt", missing, "--pred", missing, "--plot", str(out)],
    }


COMMANDS = list(_commands(Path("."), Path(".")))


def _out_name(command: str) -> str:
    """An output name the command would accept, so that only its kind is wrong."""
    return "out.npz" if command.startswith("fvd") else "out.csv"


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_file_that_is_a_device_is_refused(tmp_path, capsys, command):
    node = device_node(tmp_path / _out_name(command))
    assert run(_commands(tmp_path, node)[command]) == 2
    one_error_line(capsys.readouterr().err, node, "is a character device")
    assert still_device(node)


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_file_that_is_a_symlink_is_refused(tmp_path, capsys, command):
    link = symlink(tmp_path / _out_name(command))
    assert run(_commands(tmp_path, link)[command]) == 2
    one_error_line(capsys.readouterr().err, link, "is a symbolic link")
    assert link_intact(link)


def test_fvd_stats_names_a_missing_output_folder_before_embedding(tmp_path, capsys, monkeypatch):
    import i3d.fvd.embedding

    def no_embedding(*args, **kwargs):
        raise AssertionError("embedded before checking --out")

    monkeypatch.setattr(i3d.fvd.embedding.Embedder, "__init__", no_embedding)
    videos = tmp_path / "clips.npy"
    np.save(videos, np.zeros((2, 16, 8, 8, 3), np.uint8))
    out = tmp_path / "nodir" / "x.npz"
    assert run(["fvd", "stats", str(videos), "--num-frames", "16", "--out", str(out)]) == 2
    one_error_line(capsys.readouterr().err, tmp_path / "nodir", "does not exist")


# ---- commands that write into an output folder -----------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return random_weights_file(tmp_path_factory.mktemp("w") / "rgb.safetensors", seed=3)


def _inputs(folder: Path, count: int = 2) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        np.save(folder / f"v{i}.npy", rng.uniform(-1, 1, (1, 9, 16, 16, 3)).astype(np.float32))
        paths.append(str(folder / f"v{i}.npy"))
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["device", "symlink", "sidecar device"])
def test_extract_refuses_the_one_output_and_does_the_others(tmp_path, capsys, weights, kind):
    inputs = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    bad = out / ("v0.npy.rgb.npy.json" if kind == "sidecar device" else "v0.npy.rgb.npy")
    device_node(bad) if kind != "symlink" else symlink(bad)
    rc = main(["extract", *inputs, "--out", str(out), "--weights", str(weights), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if ": error: " in x]
    assert str(bad) in line and ("symbolic link" if kind == "symlink" else "character device") in line
    assert still_device(bad) if kind != "symlink" else link_intact(bad)
    assert "done 1" in err and (out / "v1.npy.rgb.npy").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["device", "symlink"])
def test_flow_refuses_a_device_or_link_output(tmp_path, capsys, kind):
    from tests.video.helpers import encode, indexed_frames

    video = encode(tmp_path / "clip.mp4", indexed_frames(4, 32, 32), rate=25)
    out = tmp_path / "flow"
    out.mkdir()
    bad = out / "clip.npy"
    device_node(bad) if kind == "device" else symlink(bad)
    assert main(["flow", str(video), "--out", str(out), "--format", "npy", "--workers", "1"]) == 1
    one_error_line(capsys.readouterr().err, bad, "character device" if kind == "device" else "symbolic link")
    assert still_device(bad) if kind == "device" else link_intact(bad)


@pytest.mark.parametrize("kind", ["device", "symlink"])
def test_weights_download_refuses_a_device_or_link_in_the_cache(tmp_path, capsys, monkeypatch, kind):
    from i3d.weights import http

    def no_network(*args, **kwargs):
        raise AssertionError("went to the network")

    monkeypatch.setattr(http, "_fetch", no_network)
    monkeypatch.setenv("I3D_HOME", str(tmp_path))
    bad = tmp_path / "rgb_imagenet_pt.pt"
    device_node(bad) if kind == "device" else symlink(bad)
    assert main(["weights", "download", "rgb_imagenet_pt"]) == 1
    one_error_line(capsys.readouterr().err, bad, "character device" if kind == "device" else "symbolic link")
    assert still_device(bad) if kind == "device" else link_intact(bad)


# ---- i3d verify ---------------------------------------------------------------------


def _features(out: Path, name: str, content: bytes) -> Path:
    import hashlib

    data = out / f"{name}.rgb.npy"
    data.write_bytes(content)
    meta = {"sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content), "shape": [1, 1024]}
    data.with_name(data.name + ".json").write_text(json.dumps(meta))
    return data


def test_verify_reports_a_feature_file_without_its_sidecar(tmp_path, capsys):
    good = _features(tmp_path, "a", b"a" * 10)
    orphan = _features(tmp_path, "b", b"b" * 10)
    orphan.with_name(orphan.name + ".json").unlink()
    found = dict(verify_outputs(tmp_path))
    assert found.keys() == {good, orphan} and found[good] is None and "no sidecar" in found[orphan]
    assert main(["verify", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert f"BAD {orphan}: has no sidecar" in captured.out and "1 good, 1 bad" in captured.err


def test_verify_refuses_a_symlinked_feature_file_even_with_a_matching_sidecar(tmp_path, capsys):
    secret = tmp_path / "passwd"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    data = _features(tmp_path, "a", secret.read_bytes())
    data.unlink()
    data.symlink_to(secret)  # the sidecar's checksum matches what the link points to
    assert main(["verify", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert f"BAD {data}: is a symbolic link (to {secret})" in captured.out and "0 good, 1 bad" in captured.err


def test_verify_skips_hidden_temporaries_and_never_opens_a_fifo(tmp_path, capsys):
    _features(tmp_path, "a", b"a")
    (tmp_path / ".a.rgb.npy.1234.tmp").write_bytes(b"half")
    fifo(tmp_path / "x.json")
    assert main(["verify", str(tmp_path)]) == 0
    assert "1 good, 0 bad" in capsys.readouterr().err


# ---- --out inside the input folder ------------------------------------------------------


@pytest.mark.slow
def test_extract_rerun_with_out_inside_the_input_folder_reads_no_outputs(tmp_path, capsys, weights):
    videos = tmp_path / "videos"
    _inputs(videos)
    argv = ["extract", str(videos), "--weights", str(weights), "--device", "cpu"]
    for out in (videos / "features", videos):  # below the inputs, and the input folder itself
        for run in range(2):
            assert main([*argv, "--out", str(out)]) == 0
            err = capsys.readouterr().err
            assert ("done 2" if run == 0 else "skipped 2") in err and "failed" not in err.replace("failed 0", ""), err
