"""Fault injection for the batch commands: nothing lost, nothing mixed up.

Each case checks that no traceback reaches the user, that every good input
is done, and that every file under a final name is whole and right (its
sidecar's size and SHA-256 match; no temporary file is left behind).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from i3d import extract as E
from i3d.atomic import OutputLock
from i3d.cli import main
from i3d.video import FlowEngine, Preprocess, load_input
from i3d.weights.hashing import sha256
from tests.conftest import random_weights_file
from tests.video.helpers import encode as encode_file
from tests.video.helpers import indexed_frames

SMALL_RGB = Preprocess("rgb", fps=25.0, resize_short_side=40, crop=32)
SMALL_FLOW = Preprocess("flow", fps=25.0, resize_short_side=40, crop=32)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return random_weights_file(tmp_path_factory.mktemp("w") / "rgb.safetensors", seed=3)


def write_npy(path: Path, frames: int = 17, size: int = 16, seed: int = 0) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    np.save(path, rng.uniform(-1, 1, (1, frames, size, size, 3)).astype(np.float32))
    return str(path)


def encode(path: Path, frames, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return encode_file(path, frames, **options)


def extract(weights: Path, *args: str) -> list[str]:
    return ["extract", *args, "--weights", str(weights), "--device", "cpu"]


def cli(argv: list[str], capsys) -> tuple[int, str]:
    """Run ``i3d ARGV`` in this process; its exit status and stderr."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return rc, err


def run_cli(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m i3d ARGV`` in a process of its own."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "i3d", *argv], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr}"
    return proc


def check_outputs(out: Path) -> dict[str, dict]:
    """Every output under ``out`` is whole and described by its own sidecar;
    no temporary file is left. Returns the sidecars by data file name."""
    assert not [p for p in out.rglob(".*") if p.name.endswith((".tmp", ".tmpdir"))]
    sidecars = {}
    for sidecar in out.rglob("*.json"):
        meta = json.loads(sidecar.read_text())
        data = sidecar.with_name(sidecar.name[: -len(".json")])
        assert data.suffix == f".{meta['format']}", sidecar  # one sidecar per format
        assert data.stat().st_size == meta["bytes"] and sha256(data) == meta["sha256"], data
        sidecars[str(data.relative_to(out))] = meta
    for data in out.rglob("*"):
        if data.is_file() and not data.name.startswith(".") and data.suffix != ".json":
            assert str(data.relative_to(out)) in sidecars or data.name.startswith("filler"), data
    return sidecars


def features(weights: Path, path: str) -> np.ndarray:
    return E.Extractor(weights=weights, device="cpu").extract(path)["rgb"].data


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """A tmpfs mounted at ``path`` (root only); the test skips where it cannot mount."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    except OSError:
        pytest.skip("no mount command")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` but ``leave`` bytes."""
    filler = folder / "filler"
    block = b"\0" * 4096
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


# ---- 1. output names never collide --------------------------------------------------


@pytest.mark.slow
def test_same_stem_in_other_folders_and_flattened_names(tmp_path, weights, capsys):
    inputs = [write_npy(tmp_path / p, seed=i) for i, p in enumerate(("a/b.npy", "c/b.npy", "a__b.npy"))]
    out = tmp_path / "out"
    rc, err = cli(extract(weights, *inputs, "--out", str(out)), capsys)
    assert rc == 0 and "done 3, skipped 0, failed 0" in err
    sidecars = check_outputs(out)
    assert sorted(sidecars) == ["a/b.npy.rgb.npy", "a__b.npy.rgb.npy", "c/b.npy.rgb.npy"]
    for name, path in zip(("a/b.npy", "c/b.npy", "a__b.npy"), inputs):
        assert sidecars[f"{name}.rgb.npy"]["video"] == path
        np.testing.assert_array_equal(np.load(out / f"{name}.rgb.npy"), features(weights, path))
    rc, err = cli(extract(weights, *inputs, "--out", str(out)), capsys)
    assert rc == 0 and "done 0, skipped 3" in err


def test_same_stem_other_extension(tmp_path, weights):
    for suffix, seed in ((".mp4", 0), (".mov", 1)):
        frames = indexed_frames(12 + 4 * seed, height=40, width=48)
        encode(tmp_path / "x" / f"clip{suffix}", frames, rate=25)
    inputs = [str(tmp_path / "x" / "clip.mp4"), str(tmp_path / "x" / "clip.mov")]
    ex = E.Extractor(weights=weights, device="cpu", transforms={"rgb": SMALL_RGB})
    summary = E.extract_all(inputs, tmp_path / "out", ex, progress=False)
    assert summary.done == inputs and not summary.failed
    sidecars = check_outputs(tmp_path / "out")
    assert {m["video"]: m["frames"] for m in sidecars.values()} == {inputs[0]: 12, inputs[1]: 16}


def test_names_equal_but_for_case_are_refused_before_any_work(tmp_path, weights, capsys):
    inputs = [write_npy(tmp_path / "x" / "clip.npy"), write_npy(tmp_path / "x" / "CLIP.npy", seed=1)]
    out = tmp_path / "out"
    rc, err = cli(extract(weights, *inputs, "--out", str(out)), capsys)
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert inputs[0] in err and inputs[1] in err and "equal but for case" in err
    assert not out.exists() or not list(out.iterdir())


def test_flow_command_refuses_colliding_names_before_any_work(tmp_path, capsys):
    for suffix in (".mp4", ".mov"):
        encode(tmp_path / "x" / f"clip{suffix}", indexed_frames(4), rate=25)
    inputs = [str(tmp_path / "x" / "clip.mp4"), str(tmp_path / "x" / "clip.mov")]
    rc, err = cli(["flow", *inputs, "--out", str(tmp_path / "flow")], capsys)
    assert rc == 1 and inputs[0] in err and inputs[1] in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "flow").exists() or not list((tmp_path / "flow").iterdir())


# ---- 2. the flow cache is keyed by the source and checked against it -----------------


def moving(count: int, step: int) -> list[np.ndarray]:
    rng = np.random.default_rng(step)
    base = (rng.uniform(0, 255, (80, 96)) > 128).astype(np.uint8) * 200 + 20
    base = np.stack([base] * 3, axis=-1)
    return [np.roll(base, (step * i, 2 * step * i), axis=(0, 1))[:40, :48].copy() for i in range(count)]


@pytest.mark.slow
def test_flow_cache_is_not_shared_by_videos_of_one_name(tmp_path):
    # TV-L1 in this process: the default engine starts a pool of processes (each importing torch)
    # for every load; which engine computes the flow does not matter to the cache's keys.
    engine = FlowEngine(workers=1, engine="opencv")
    cam1 = encode(tmp_path / "cam1" / "clip.mp4", moving(5, 1), rate=25, pix_fmt="yuv444p", options={"qp": "0"})
    cam2 = encode(tmp_path / "cam2" / "clip.mp4", moving(5, 2), rate=25, pix_fmt="yuv444p", options={"qp": "0"})
    cache = tmp_path / "cache"
    one = load_input(cam1, SMALL_FLOW, flow_dir=cache, flow_engine=engine)
    two = load_input(cam2, SMALL_FLOW, flow_dir=cache, flow_engine=engine)
    assert not torch.equal(one, two)
    torch.testing.assert_close(two, load_input(cam2, SMALL_FLOW, flow_engine=engine))  # computed, not cam1's
    torch.testing.assert_close(load_input(cam1, SMALL_FLOW, flow_dir=cache, flow_engine=engine), one)  # reused
    records = [json.loads(p.read_text()) for p in cache.glob("*.json")]
    assert sorted(r["source"] for r in records) == [str(cam1), str(cam2)]
    assert all({"size", "mtime_ns", "fps", "short_side", "frames"} <= set(r) for r in records)

    # The source changes under the same path: its entry is recomputed, never reused.
    encode(cam1, moving(5, 2), rate=25, pix_fmt="yuv444p", options={"qp": "0"})
    os.utime(cam1, ns=(time.time_ns(), time.time_ns() + 10**9))
    torch.testing.assert_close(load_input(cam1, SMALL_FLOW, flow_dir=cache, flow_engine=engine), two)


# ---- 3. write errors: full disk, read-only or invalid output folder ------------------


@pytest.mark.parametrize("fmt", E.FORMATS)
def test_full_disk_stops_cleanly_and_resumes(tmp_path, weights, capsys, fmt):
    inputs = [write_npy(tmp_path / "in" / f"v{i}.npy", seed=i) for i in range(4)]
    with tmpfs(tmp_path / "disk", "size=1m") as disk:
        out = disk / "out"
        out.mkdir()
        filler = fill(disk, leave=40 * 1024)
        rc, err = cli(extract(weights, *inputs, "--out", str(out), "--format", fmt), capsys)
        assert rc == 1
        lines = err.strip().splitlines()
        full = [line for line in lines if line.endswith(": no space left on device")]
        assert len(full) == 1 and f".rgb.{fmt}" in full[0]
        (stop,) = [line for line in lines if "inputs not done" in line]
        not_done = int(stop.split("device: ")[1].split()[0])
        assert stop.endswith(f"no space left on device: {not_done} inputs not done; free space and rerun to resume")
        assert 1 <= not_done <= 4 and f"done {4 - not_done}, skipped 0, failed 0" in lines[-1]
        assert len(check_outputs(out)) == 4 - not_done
        filler.unlink()
        rc, err = cli(extract(weights, *inputs, "--out", str(out), "--format", fmt), capsys)
        assert rc == 0 and f"done {not_done}, skipped {4 - not_done}, failed 0" in err
        assert len(check_outputs(out)) == 4


def test_read_only_output_is_one_line_before_any_work(tmp_path, weights, capsys):
    src = write_npy(tmp_path / "v.npy")
    with tmpfs(tmp_path / "ro", "size=1m,ro") as ro:
        for out in (ro, ro / "sub"):
            rc, err = cli(extract(weights, src, "--out", str(out)), capsys)
            assert rc == 1 and err.count("\n") == 1
            assert str(out) in err and "Read-only file system" in err


def test_the_write_check_leaves_no_name_in_the_output(tmp_path):
    from i3d.atomic import check_output_dir

    # The check writes an unnamed file (O_TMPFILE where the OS has it), so no
    # kill at any moment can leave a probe behind for the user to find.
    out = tmp_path / "new" / "sub"
    for _ in range(2):  # a new folder, then the same folder again
        assert check_output_dir(out) == out
        assert list(out.iterdir()) == []


def test_output_that_is_a_file_is_one_line(tmp_path, weights, capsys):
    src = write_npy(tmp_path / "v.npy")
    (tmp_path / "out").write_text("a file")
    rc, err = cli(extract(weights, src, "--out", str(tmp_path / "out")), capsys)
    assert rc == 1 and err.count("\n") == 1 and "out: is not a folder" in err
    assert (tmp_path / "out").read_text() == "a file"


def test_each_format_has_its_own_sidecar(tmp_path, weights, capsys):
    src = write_npy(tmp_path / "clip.npy")
    out = tmp_path / "out"
    for fmt in ("npy", "npz"):
        rc, _ = cli(extract(weights, src, "--out", str(out), "--format", fmt), capsys)
        assert rc == 0
    sidecars = check_outputs(out)
    assert {k: m["format"] for k, m in sidecars.items()} == {"clip.npy.rgb.npy": "npy", "clip.npy.rgb.npz": "npz"}
    rc, err = cli(extract(weights, src, "--out", str(out), "--format", "npy"), capsys)
    assert rc == 0 and "done 0, skipped 1" in err


def test_verify_redoes_outputs_that_do_not_match_their_checksum(tmp_path, weights, capsys):
    src = write_npy(tmp_path / "clip.npy")
    out = tmp_path / "out"
    assert cli(extract(weights, src, "--out", str(out)), capsys)[0] == 0
    data = out / "clip.npy.rgb.npy"
    good = data.read_bytes()
    data.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))  # same size, wrong content
    rc, err = cli(extract(weights, src, "--out", str(out)), capsys)
    assert rc == 0 and "skipped 1" in err  # a rerun checks sizes only
    rc, err = cli(extract(weights, src, "--out", str(out), "--verify"), capsys)
    assert rc == 0 and "done 1, skipped 0" in err and data.read_bytes() == good
    check_outputs(out)


# ---- 4. a decoding worker killed by the OOM killer ----------------------------------


def children(pid: int) -> list[tuple[int, str]]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append((int(stat.parent.name), cmdline))
    return found


# ``i3d extract ARGV`` that stops once v0's output is written (the worker is
# then decoding a later input, or blocked on the full pipe): it says so on
# stdout and reads a line from stdin before it goes on.
_PAUSED_RUN = """
import sys
from i3d.cli import main
from i3d.extract import jobs

write_sidecar = jobs.write_sidecar

def sidecar_then_wait(paths, *args, **kwargs):
    write_sidecar(paths, *args, **kwargs)
    if paths.data.name == "v0.npy.rgb.npy":
        print("v0 written", flush=True)
        sys.stdin.readline()

jobs.write_sidecar = sidecar_then_wait
sys.exit(main(sys.argv[1:]))
"""

# Inputs and frames: with the run paused after v0, the worker can decode at
# most QUEUE_CHUNKS + 2 chunks plus a pipe's worth (64 KiB of 3 KiB chunks of
# 16x16 frames: about 20) ahead, so 60 frames after v0 keep it alive until killed.
KILLED_WORKER_INPUTS, KILLED_WORKER_FRAMES = 4, 20


def dead(pid: int) -> bool:
    """Whether process ``pid`` has ended (gone, or a zombie its parent has not reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.slow
def test_killed_decoding_worker_is_reported_and_replaced(tmp_path, weights, capsys):
    count = KILLED_WORKER_INPUTS
    inputs = [write_npy(tmp_path / "in" / f"v{i}.npy", frames=KILLED_WORKER_FRAMES, seed=i) for i in range(count)]
    out = tmp_path / "out"
    argv = extract(weights, *inputs, "--out", str(out), "--workers", "1", "--chunk", "1")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_RUN, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert "v0 written\n" in iter(proc.stdout.readline, ""), proc.communicate()[1]  # reads up to that line
        (worker,) = [pid for pid, cmd in children(proc.pid) if "spawn_main" in cmd]
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 300
        while not dead(worker) and time.monotonic() < deadline:
            time.sleep(0.01)  # SIGKILL is delivered at once; the kernel closes the pipe as the process ends
        assert dead(worker)
        _, err = proc.communicate("\n", timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err, err
    assert proc.returncode == 1, err
    failed = [line for line in err.splitlines() if "decoding worker died (killed by SIGKILL" in line]
    assert len(failed) == 1 and f"done {count - 1}, skipped 0, failed 1" in err, err
    assert len(check_outputs(out)) == count - 1
    # The resume: in this process, decoding inline (a worker process would only import torch again).
    rc, err = cli(extract(weights, *inputs, "--out", str(out), "--workers", "0", "--chunk", "1"), capsys)
    assert rc == 0 and f"done 1, skipped {count - 1}, failed 0" in err
    assert len(check_outputs(out)) == count


# ---- 5. concurrent runs on one output folder -----------------------------------------


def test_output_made_by_another_live_run_is_left_to_it(tmp_path, weights, capsys):
    a, b = write_npy(tmp_path / "a.npy"), write_npy(tmp_path / "b.npy", seed=1)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".a.npy.rgb.npy.0123456789ab.tmp"  # its writer is gone: nobody holds a's lock
    live = out / ".b.npy.rgb.npy.0123456789ab.tmp"  # the other run's, being written
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    lock = OutputLock(out / "b.npy.rgb.npy")
    assert lock.acquire()
    try:
        rc, err = cli(extract(weights, a, b, "--out", str(out)), capsys)
        assert rc == 0 and "done 1, skipped 0, failed 0, 1 left to another run making them" in err
        assert not stale.exists() and live.exists() and not (out / "b.npy.rgb.npy").exists()
        assert not OutputLock(out / "b.npy.rgb.npy").acquire()  # still ours
    finally:
        lock.release()
    live.unlink()
    rc, err = cli(extract(weights, a, b, "--out", str(out)), capsys)
    assert rc == 0 and "done 1, skipped 1" in err
    assert len(check_outputs(out)) == 2


@pytest.mark.slow
def test_two_runs_at_once_share_the_work(tmp_path, weights):
    inputs = [write_npy(tmp_path / "in" / f"v{i}.npy", frames=24, seed=i) for i in range(6)]
    argv = extract(weights, *inputs, "--out", str(tmp_path / "out"), "--chunk", "2", "--workers", "0")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    runs = [
        subprocess.Popen([sys.executable, "-m", "i3d", *argv], stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    errs = [run.communicate(timeout=600)[1] for run in runs]
    for run, err in zip(runs, errs):
        assert run.returncode == 0 and "Traceback" not in err, err
    done = [int(err.split("i3d extract: done ")[1].split(",")[0]) for err in errs]
    assert sum(done) == 6, errs  # every output made once
    assert len(check_outputs(tmp_path / "out")) == 6


# ---- 7. inputs that are not videos ----------------------------------------------------


def test_fifo_and_device_inputs_are_refused_without_reading(tmp_path, weights, capsys):
    good = write_npy(tmp_path / "good.npy")
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    signal.alarm(300)  # a read of the FIFO would block forever
    try:
        rc, err = cli(extract(weights, str(fifo), "/dev/zero", good, "--out", str(tmp_path / "out")), capsys)
    finally:
        signal.alarm(0)
    assert rc == 1 and "done 1, skipped 0, failed 2" in err
    assert f"{fifo}: is a FIFO, not a video file or folder" in err
    assert "/dev/zero: is a device file, not a video file or folder" in err
    assert len(check_outputs(tmp_path / "out")) == 1


def test_input_list_that_is_not_utf8_or_a_fifo(tmp_path, weights, capsys):
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"good.npy\n\xff\xfe.mp4\n")
    rc, err = cli(extract(weights, str(listing), "--out", str(tmp_path / "out")), capsys)
    assert rc == 1 and err.strip() == f"i3d extract: error: {listing}: line 2: not UTF-8 text (byte 0xff)"
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    rc, err = cli(extract(weights, str(fifo), "--out", str(tmp_path / "out")), capsys)
    assert rc == 1 and err.strip() == f"i3d extract: error: {fifo}: is a FIFO, not a video file or folder"


def test_verify_command_finds_damaged_outputs(tmp_path, weights, capsys):
    inputs = [write_npy(tmp_path / f"v{i}.npy", seed=i) for i in range(2)]
    out = tmp_path / "out"
    assert cli(extract(weights, *inputs, "--out", str(out)), capsys)[0] == 0
    assert main(["verify", str(out)]) == 0
    assert "2 good, 0 bad" in capsys.readouterr().err
    data = out / "v1.npy.rgb.npy"
    data.write_bytes(data.read_bytes()[:-1] + b"\x7f")
    assert main(["verify", str(out), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == f"BAD {data}: SHA-256 differs from the sidecar's" and "1 good, 1 bad" in captured.err
