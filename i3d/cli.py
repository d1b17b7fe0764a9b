"""The ``i3d`` command: a thin layer over the Python API.

Batch commands report each failing input on stderr in one line, go on with
the others, and exit with status 1 if any failed (2 for usage errors).
Every message on stderr reads ``i3d <command>: error: <cause>`` (or
``warning:``), usage errors included (:mod:`i3d.console`).

A closed output pipe (``i3d weights list --json | head -1``) ends the
command quietly with status 141, what a command killed by SIGPIPE returns:
a shell pipeline under ``set -o pipefail`` sees the same as for ``grep``.

``i3d --help`` and ``i3d --version`` import neither torch nor numpy: each
subcommand's module is imported, and its flags added, only when that
subcommand is parsed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from i3d import console
from i3d.version import __version__

Runner = Callable[[argparse.Namespace], int]

# Exit status of a command whose output pipe was closed: 128 + SIGPIPE (13).
EXIT_BROKEN_PIPE = 141
EXIT_INTERRUPTED = 130


# ---- the parser ---------------------------------------------------------------------


# A subcommand's flags and runner: the functions, or "module:function" to
# import when the subcommand is parsed (modules that import torch).
AddArguments = Callable[[argparse.ArgumentParser], None] | str
Run = Runner | str


def _resolve(target: Callable | str) -> Callable:
    if callable(target):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line; a subcommand's flags can be added when it is parsed.

    Adding them lazily keeps ``i3d --help`` from importing the modules that
    define them (torch, numpy, OpenCV and PyAV take over a second to import).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._deferred: tuple[AddArguments, Run | None] | None = None

    def defer(self, add: AddArguments, run: Run | None) -> None:
        """Add ``add(self)``'s flags, and set ``run`` as the runner, when this parser is first used.

        ``run`` is ``None`` for a group whose own subcommands set theirs.
        """
        self._deferred = (add, run)

    def complete(self) -> _Parser:
        """Add the deferred flags now (idempotent); returns ``self``."""
        if self._deferred is not None:
            add, run = self._deferred
            self._deferred = None
            _resolve(add)(self)
            if run is not None:
                self.set_defaults(run=_resolve(run))
        return self

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self.complete()
        # The innermost subcommand parsed names the command in messages:
        # argparse copies a subparser's values over its parent's.
        self.set_defaults(command_name=self.prog, command_parser=self)
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self.complete()
        return super().format_help()

    def error(self, message: str):  # type: ignore[override]
        """``i3d <command>: error: <message> (see 'i3d <command> --help')`` and exit status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _command(sub: argparse._SubParsersAction, name: str, help: str, add: AddArguments, run: Run | None) -> None:
    """Subcommand ``name``: flags from ``add(parser)``, run by ``run(args) -> int``.

    ``add`` and ``run`` may be ``"module:function"``, imported only when the
    subcommand is parsed; ``run`` is ``None`` for a group of subcommands.
    """
    p = sub.add_parser(name, help=help, description=help)
    p.defer(add, run)


def build_parser() -> argparse.ArgumentParser:
    """The ``i3d`` parser; a subcommand's module is imported only when that subcommand is parsed."""
    from i3d.fvd.cli import HELP as FVD_HELP  # a light module: its flags import the rest

    parser = _Parser(prog="i3d", description="Exact, fast I3D: classify, extract features, evaluate.")
    parser.add_argument("--version", action="version", version=f"i3d {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(
        sub,
        "predict",
        "classify videos with pretrained weights",
        "i3d.predict_cli:add_arguments",
        "i3d.predict_cli:run",
    )
    _command(
        sub,
        "extract",
        "extract features from videos into files",
        "i3d.extract.cli:add_extract_arguments",
        "i3d.extract.cli:run_extract",
    )
    _command(
        sub,
        "verify",
        "check extracted features against their sidecars' checksums",
        "i3d.extract.cli:add_verify_arguments",
        "i3d.extract.cli:run_verify",
    )
    _command(
        sub,
        "export",
        "write the network as ONNX, OpenVINO IR or TorchScript, checked against the torch model",
        "i3d.export.cli:add_export_arguments",
        "i3d.export.cli:run_export",
    )
    _command(
        sub,
        "train",
        "fine-tune on class folders, CSV lists, Kinetics or Charades (its published recipe by default)",
        "i3d.train.cli:add_train_arguments",
        "i3d.train.cli:run_train",
    )
    _command(sub, "fvd", FVD_HELP, "i3d.fvd.cli:add_arguments", "i3d.fvd.cli:run")
    _command(
        sub,
        "flow",
        "compute TV-L1 optical flow frames",
        "i3d.video.cli:add_flow_arguments",
        "i3d.video.cli:run_flow",
    )
    _command(
        sub,
        "convert",
        "convert a checkpoint (DeepMind TensorFlow, .pt, .safetensors) to .safetensors or .pt",
        "i3d.convert.cli:add_convert_arguments",
        "i3d.convert.cli:run_convert",
    )

    weights_help = "the registry of published checkpoints, and the local cache"
    _command(sub, "weights", weights_help, "i3d.weights.cli:add_weights_arguments", None)

    eval_help = (
        "the official Charades evaluations (classification, localization), a timeline plot, and the accuracy of "
        "a trained model on a labelled list"
    )
    evaluate = sub.add_parser("eval", help=eval_help, description=eval_help)
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True, metavar="TASK")
    _command(
        eval_sub,
        "classify",
        "Charades classification mAP (Charades_v1_classify.m)",
        "i3d.charades.cli:add_classify_arguments",
        "i3d.charades.cli:run_classify",
    )
    _command(
        eval_sub,
        "localize",
        "Charades per-frame localization mAP (Charades_v1_localize.m)",
        "i3d.charades.cli:add_localize_arguments",
        "i3d.charades.cli:run_localize",
    )
    _command(
        eval_sub,
        "timeline",
        "plot one video's ground truth against predicted per-frame scores (PNG)",
        "i3d.charades.cli:add_timeline_arguments",
        "i3d.charades.cli:run_timeline",
    )
    _command(
        eval_sub,
        "accuracy",
        "top-1, top-5 and mean class accuracy (mAP if multi-label) of a trained model on a labelled video list",
        "i3d.train.eval_cli:add_accuracy_arguments",
        "i3d.train.eval_cli:run_accuracy",
    )
    return parser


def _quiet_broken_pipe() -> int:
    """After stdout's reader went away: no traceback, not even at exit when Python flushes stdout."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test's capture)
        pass
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE


@contextlib.contextmanager
def _remembered_interrupts() -> Iterator[list[int]]:
    """Ctrl-C raises ``KeyboardInterrupt`` as always, and is remembered in the list yielded.

    A library can swallow the interrupt and fail in another way: torch's C
    code clears the error of the numpy import it makes itself, and numpy,
    imported again, raises ``ImportError: cannot load module more than once
    per process``. Such an error is the interrupt's doing, not a bug to show
    with a traceback. Only Python's own handler is wrapped (never one that a
    caller installed, nor SIGINT ignored in a background job), and only
    where handlers can be set: the main thread.
    """
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield seen
        return

    def interrupted(signum: int, frame: object) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _is_interrupt(err: BaseException, interrupts: list[int]) -> bool:
    """A Ctrl-C, or an error that follows one (a library that turned the
    interrupt into its own error; see :func:`_remembered_interrupts`)."""
    return isinstance(err, KeyboardInterrupt) or (bool(interrupts) and isinstance(err, Exception))


def main(argv: list[str] | None = None) -> int:
    """Run the ``i3d`` command; returns its exit status."""
    with _remembered_interrupts() as interrupts:
        try:
            args, unknown = build_parser().parse_known_args(argv)
            if unknown:  # named by the subcommand that was given them, not by plain "i3d"
                args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
            # --quiet silences notes as it does progress lines (commands without it: never quiet).
            with console.command(args.command_name), console.quiet(getattr(args, "quiet", False)):
                try:
                    status = args.run(args)
                    sys.stdout.flush()
                except BaseException as err:
                    if not _is_interrupt(err, interrupts):
                        raise
                    console.error("interrupted")  # in the command's voice
                    return EXIT_INTERRUPTED
        except BrokenPipeError:
            return _quiet_broken_pipe()
        except BaseException as err:  # while parsing, which imports the subcommand's modules (torch: seconds)
            if not _is_interrupt(err, interrupts):
                raise
            console.error("interrupted")
            return EXIT_INTERRUPTED
    return status


if __name__ == "__main__":
    sys.exit(main())
