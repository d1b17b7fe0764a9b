"""Every command fails in one line: ``i3d <command>: error: <cause>`` on stderr, no traceback.

Bad devices, FIFOs and devices given as files, usage errors, NaN scores and
huge ids in submissions, NaN in ``--json`` output, and a closed output pipe
(which ends the command quietly with status 141).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from i3d import console
from i3d.cli import EXIT_BROKEN_PIPE, build_parser, main
from i3d.errors import shorten
from i3d.runtime import available_devices, resolve_device

ROOT = Path(__file__).resolve().parents[1]
TF_FIXTURES = ROOT / "tests" / "fixtures" / "tf"
CLASSES = 157


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (status, stdout, stderr); usage errors exit through SystemExit."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def one_error_line(err: str, command: str) -> str:
    """The single stderr line, checked to carry the command's prefix; returns the message after it."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    prefix = f"{command}: error: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix) :]


def run_python(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, **kwargs)


# ---- devices ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, command",
    [
        (["predict", "clip.mp4"], "i3d predict"),
        (["extract", "clip.mp4", "--out", "o"], "i3d extract"),
        (["train", "--root", ".", "--csv", "c.csv", "--out", "o"], "i3d train"),
    ],
)
def test_an_unknown_device_lists_the_available_ones(argv, command, capsys):
    status, out, err = run_main([*argv, "--device", "gpu"], capsys)
    message = one_error_line(err, command)
    assert status == 2 and out == ""
    assert message.startswith("argument --device: unknown device 'gpu'; available: cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line(capsys):
    status, _, err = run_main(["predict", "clip.mp4", "--device", "cuda"], capsys)
    assert status == 2
    message = one_error_line(err, "i3d predict")
    assert "device 'cuda' is not available" in message and "available: cpu" in message


def test_a_gpu_index_beyond_the_gpus_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    assert available_devices()[:3] == ["cpu", "cuda:0", "cuda:1"]
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("cuda") == torch.device("cuda")  # the index is the caller's (LOCAL_RANK)
    with pytest.raises(
        ValueError, match=r"^device 'cuda:7' is not available \(there are 2 CUDA GPUs\); available: cpu, cuda:0, cuda:1"
    ):
        resolve_device("cuda:7")


def test_resolve_device_defaults_and_passes_devices_through():
    assert resolve_device(None).type in ("cpu", "cuda")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'cuda:x'"):
        resolve_device("cuda:x")


# ---- FIFOs and devices as files ---------------------------------------------------------


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "fifo.csv"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    "argv, flag, command",
    [
        (["eval", "classify", "--gt", "{special}", "--pred", "p.txt"], "--gt", "i3d eval classify"),
        (["eval", "localize", "--gt", "gt.csv", "--pred", "{special}"], "--pred", "i3d eval localize"),
        (["eval", "classify", "--gt", "g", "--pred", "p", "--classes", "{special}"], "--classes", "i3d eval classify"),
        (["predict", "clip.mp4", "--labels", "{special}"], "--labels", "i3d predict"),
        (["extract", "frames", "--out", "o", "--charades-csv", "{special}"], "--charades-csv", "i3d extract"),
        (["train", "--root", ".", "--csv", "{special}", "--out", "o"], "--csv/--train", "i3d train"),
        (
            ["train", "--root", ".", "--csv", "c", "--val-csv", "{special}", "--out", "o"],
            "--val-csv/--val",
            "i3d train",
        ),
    ],
)
def test_a_fifo_given_as_a_file_is_refused_not_waited_on(argv, flag, command, fifo, capsys):
    status, _, err = run_main([a.replace("{special}", str(fifo)) for a in argv], capsys)
    assert status == 2
    message = one_error_line(err, command)
    assert message.startswith(f"argument {flag}: {fifo}: is a FIFO (named pipe), not a regular file")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_given_as_a_file_is_refused(capsys):
    status, _, err = run_main(["eval", "classify", "--gt", "/dev/zero", "--pred", "p.txt"], capsys)
    assert status == 2
    assert "/dev/zero: is a device, not a regular file" in one_error_line(err, "i3d eval classify")


def test_the_charades_readers_refuse_a_fifo_too(fifo):
    from i3d.charades.annotations import read_csv
    from i3d.charades.metrics import read_classification_submission
    from i3d.errors import InputError

    for read in (read_csv, read_classification_submission):
        with pytest.raises(InputError, match="is a FIFO"):
            read(fifo)


# ---- usage errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, command, cause",
    [
        ([], "i3d", "the following arguments are required: COMMAND"),
        (["frob"], "i3d", "argument COMMAND: invalid choice: 'frob'"),
        (["eval"], "i3d eval", "the following arguments are required: TASK"),
        (["weights"], "i3d weights", "the following arguments are required: ACTION"),
        (["eval", "classify", "--gt", "g"], "i3d eval classify", "the following arguments are required: --pred"),
        (["eval", "timeline", "--gt", "g", "--pred", "p", "--video", "A", "--out", "x.png", "--top", "0"],
         "i3d eval timeline", "argument --top: 0 is not >= 1"),
        (["weights", "list", "--frob"], "i3d weights list", "unrecognized arguments: --frob"),
        (["predict", "clip.mp4", "--stream", "both"], "i3d predict", "argument --stream: invalid choice: 'both'"),
        (["flow", "v.mp4", "--out", "o", "--workers", "0"], "i3d flow", "argument --workers: 0 is not >= 1"),
        (["convert", "model.ckpt"], "i3d convert", "OUT is required unless --list is given"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_with_the_commands_prefix(argv, command, cause, capsys):
    status, out, err = run_main(argv, capsys)
    assert status == 2 and out == ""
    assert one_error_line(err, command).startswith(cause)


def test_runtime_errors_carry_the_commands_prefix(tmp_path, capsys):
    status, _, err = run_main(["convert", tmp_path / "missing.ckpt", tmp_path / "out.safetensors"], capsys)
    assert status == 1 and "missing.ckpt.index: cannot read the index" in one_error_line(err, "i3d convert")
    status, _, err = run_main(["eval", "classify", "--gt", tmp_path / "gt.csv", "--pred", tmp_path / "p"], capsys)
    assert status == 1 and "gt.csv: cannot read" in one_error_line(err, "i3d eval classify")


# ---- Charades submissions ----------------------------------------------------------------


@pytest.fixture
def gt(tmp_path) -> Path:
    path = tmp_path / "Charades_v1_test.csv"
    path.write_text("id,actions,length\nA,c000 0.0 1.0,10.0\nB,c001 0.0 1.0,10.0\n")
    return path


def classify_line(video_id: str, scores: np.ndarray) -> str:
    return f"{video_id} {' '.join(str(s) for s in scores)}\n"


def test_a_nan_score_is_refused_naming_file_and_line(gt, tmp_path, capsys):
    pred = tmp_path / "pred.txt"
    nan_row = np.zeros(CLASSES)
    nan_row[2] = np.nan
    pred.write_text(classify_line("A", np.zeros(CLASSES)) + classify_line("B", nan_row))
    status, out, err = run_main(["eval", "classify", "--gt", gt, "--pred", pred, "--json"], capsys)
    assert status == 1 and out == ""
    assert one_error_line(err, "i3d eval classify") == f"{pred}:2: score 3 is NaN"


def test_writing_a_nan_score_is_refused(tmp_path):
    from i3d.charades.submission import write_classification

    scores = np.zeros(CLASSES)
    scores[5] = np.nan
    with pytest.raises(ValueError, match=r"scores of 'A' hold NaN \(class 5\)"):
        write_classification(tmp_path / "sub.txt", {"A": scores})
    assert not (tmp_path / "sub.txt").exists()


def test_a_huge_id_is_cut_in_the_message(gt, tmp_path, capsys):
    huge = "x" * 5_000_000
    pred = tmp_path / "pred.txt"
    pred.write_text(classify_line(huge, np.zeros(CLASSES)))
    status, _, err = run_main(["eval", "classify", "--gt", gt, "--pred", pred], capsys)
    assert status == 1
    message = one_error_line(err, "i3d eval classify")
    assert len(message) < len(str(pred)) + 300 and "(5000002 characters)" in message  # the repr's quotes
    status, _, err = run_main(["eval", "timeline", "--gt", gt, "--pred", pred, "--video", huge, "--out", "x"], capsys)
    assert status == 1 and len(one_error_line(err, "i3d eval timeline")) < 300


def test_shorten():
    assert shorten("abc") == "abc"
    assert shorten("x" * 81) == "x" * 77 + "... (81 characters)"
    assert shorten("y" * 80) == "y" * 80


# ---- strict JSON -------------------------------------------------------------------------


def strict_loads(text: str):
    def refuse(constant: str):
        raise AssertionError(f"non-strict JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_strict_json_writes_null_with_one_warning(capsys):
    value = {"a": [1.0, float("nan"), float("inf")], "b": (float("-inf"), "x"), "c": 2}
    with console.command("i3d test"):
        text = console.strict_json(value)
    assert strict_loads(text) == {"a": [1.0, None, None], "b": [None, "x"], "c": 2}
    assert (
        capsys.readouterr().err
        == "i3d test: warning: 3 non-finite number(s) (NaN or infinity) written to JSON as null\n"
    )
    assert console.strict_json({"a": 1.5}) == '{"a": 1.5}' and capsys.readouterr().err == ""


def test_predict_json_with_nan_logits_is_strict(tmp_path, capsys):
    from i3d.model import InceptionI3d
    from i3d.weights import save_state_dict

    state = InceptionI3d().state_dict()
    state["logits.conv3d.bias"][0] = float("nan")
    weights = save_state_dict(state, tmp_path / "nan.safetensors")
    video = tmp_path / "v.npy"
    np.save(video, np.zeros((1, 9, 32, 32, 3), np.float32))
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(400)))
    argv = ["predict", video, "--weights", weights, "--labels", labels, "--json", "--top", "3"]
    status, out, err = run_main(argv, capsys)
    assert status == 0
    doc = strict_loads(out)
    assert None in [t["logit"] for t in doc[0]["top"]] + [t["prob"] for t in doc[0]["top"]]
    (line,) = err.splitlines()
    assert line.startswith("i3d predict: warning: ") and line.endswith("(NaN or infinity) written to JSON as null")


# ---- closed pipes --------------------------------------------------------------------------


def run_into_closed_pipe(args: list[str]) -> subprocess.CompletedProcess:
    """Run ``python -m i3d ARGS`` with stdout a pipe whose reader is gone, as ``| head`` leaves it."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            [sys.executable, "-m", "i3d", *args], stdout=write_end, stderr=subprocess.PIPE, text=True, env=env
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [
        ["weights", "list", "--json"],
        ["--help"],
        ["convert", str(TF_FIXTURES / "many.ckpt"), "--list"],
    ],
    ids=["weights-list-json", "help", "convert-list"],
)
@pytest.mark.slow
def test_a_closed_pipe_ends_the_command_quietly(args, tmp_path, monkeypatch):
    monkeypatch.setenv("I3D_HOME", str(tmp_path))
    result = run_into_closed_pipe(args)
    # argparse itself ignores a failed write of its help, and exits 0.
    assert result.returncode == (0 if args == ["--help"] else EXIT_BROKEN_PIPE) and result.stderr == ""


# ---- help ----------------------------------------------------------------------------------


LIGHT_CHECK = """
import sys
from i3d.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "numpy", "cv2", "av") if m in sys.modules)
print("heavy:", ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["eval", "classify", "--help"],
        ["eval", "--help"],
        ["verify", "--help"],
        ["predict", "--help"],
        ["extract", "--help"],
        ["weights", "--help"],
        ["weights", "download", "--help"],
        ["flow", "--help"],
        ["fvd", "--help"],
        ["fvd", "stats", "--help"],
        ["export", "--help"],
        ["train", "--help"],
        ["eval", "accuracy", "--help"],
        ["convert", "--help"],
    ],
)
def test_help_and_version_import_nothing_heavy(args):
    result = run_python(["-c", LIGHT_CHECK, *args])
    assert result.stderr.splitlines()[-1] == "heavy: ", result.stderr
    assert result.stdout


def all_parsers(parser: argparse.ArgumentParser, prog: str = "i3d"):
    """``(prog, parser)`` for the parser and every subcommand's, with their flags added."""
    parser.complete()
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action._name_parser_map.items():
                yield from all_parsers(sub, f"{prog} {name}")


def test_every_parser_has_a_description_and_every_choice_is_listed():
    for prog, parser in all_parsers(build_parser()):
        assert parser.description, prog
        help_text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue  # each subcommand is checked in turn
            assert action.help, (prog, action.option_strings)
            if action.choices is not None:
                for choice in action.choices:
                    assert str(choice) in help_text, (prog, action.option_strings, choice)
