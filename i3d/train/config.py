"""``i3d train``'s settings: one TOML file with every setting, flags that override it, the resolved copy.

A config is four tables::

    [data]    # what to train on: format, root, lists, classes, preprocessing
    [model]   # the starting weights
    [recipe]  # the hyper-parameters: every field of i3d.train.recipe.Recipe
    [run]     # where and how: out, seed, workers, device, precision, intervals

Settings are resolved in this order, each overriding the one before: the
built-in defaults (the PyTorch port's Charades recipe, see
:data:`i3d.train.recipe.CHARADES_RECIPE`), the ``--config`` file (a path, or
the name of a config shipped with the package: ``charades``), the
command-line flags. Paths in a config file are relative to the file's
folder; paths on the command line to the working folder. The resolved
config, paths made absolute, is written to ``OUT/config.toml``, except
``run.out``, written as ``"."`` (the file's own folder), so that a run
folder moved or copied is still its own: rerunning ``i3d train --config
OUT/config.toml`` repeats the run (``--resume`` continues it), and
``--resume`` refuses to go on with a config that differs from it (except
in the settings of :data:`RESUMABLE`, and the run folder's location)
unless ``--force-config`` is given.

The starting weights have one record, ``[model] weights``; unset, they are
the recipe's for ``data.stream`` (:func:`starting_weights`), which the
resolved config records. (Configs written before kept ``rgb_weights`` and
``flow_weights`` under ``[recipe]`` too; they are read as ``[model]
weights``.)

TOML is read with ``tomllib`` (``tomli`` before Python 3.11) and written by
:func:`dumps`, which writes exactly what configs hold: tables of strings,
numbers, booleans and lists of them. A setting that is unset (``None``) is
left out of the file.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from i3d.errors import InputError
from i3d.train.recipe import CHARADES_RECIPE, Recipe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "CONFIG_NAME",
    "BUILTIN_CONFIGS",
    "RESUMABLE",
    "DEFAULTS",
    "PATH_SETTINGS",
    "load_config",
    "merge",
    "dumps",
    "write_config",
    "differences",
    "recipe_of",
    "starting_weights",
    "LOCATION",
    "MAX_DEFAULT_WORKERS",
    "NO_WEIGHTS",
]

CONFIG_NAME = "config.toml"
BUILTIN_CONFIGS = ("charades",)
SECTIONS = ("data", "model", "recipe", "run")

# Every setting but the recipe's, with its default (None: unset).
_DATA: dict[str, Any] = {
    "format": "charades",  # charades | folders | csv | kinetics
    "root": None,  # frames or videos
    "train": None,  # Charades CSV/JSON, video,label CSV, Kinetics CSV, or class-folder split file
    "val": None,  # the same for validation
    "val_root": None,  # class folders of the validation videos (default: root)
    "classes": None,  # class names, one per line
    "stream": "rgb",
    "video_ext": None,  # Charades: ROOT/ID.EXT files instead of frame folders
    "flow_dir": None,
    "flow_engine": "torch",  # TV-L1 engine for flow computed from videos: torch | opencv
    "fps": 25.0,  # any dataset: frames per second clips are resampled to
    "short_side": 256,  # any dataset: frames resized to this short side before cropping
    "frame_fps": 25.0,  # any dataset: the rate frame folders were extracted at
    "on_broken": "error",  # a video that cannot be read: error | skip
    "hflip": "on",  # training clips mirrored at random: on | off
    "flip_label_map": None,  # CSV of label pairs swapped in a mirrored clip
    "features": None,  # linear probe on i3d extract's features
}
_MODEL: dict[str, Any] = {"weights": None}  # None: the recipe's rgb_weights / flow_weights
_RUN: dict[str, Any] = {
    "out": None,
    "seed": 0,
    "workers": None,  # None: this process's share of the CPUs
    "device": None,
    "precision": "fp32",
    "checkpoint_every": 100,
    "val_every": 0,
    "log_every": 10,
    "val_chunk": 256,
}
# Loader processes per training process when run.workers is unset: enough to
# keep a GPU fed with JPEG decoding, never more than the machine has.
MAX_DEFAULT_WORKERS = 8
# [model] weights that mean a random start.
NO_WEIGHTS = "none"
# Recipe fields that [model] weights records instead.
_WEIGHTS_FIELDS = ("rgb_weights", "flow_weights")
DEFAULTS: dict[str, dict[str, Any]] = {
    "data": _DATA,
    "model": _MODEL,
    "recipe": {k: v for k, v in CHARADES_RECIPE.to_dict().items() if k not in _WEIGHTS_FIELDS},
    "run": _RUN,
}
PATH_SETTINGS = {
    ("data", "root"),
    ("data", "train"),
    ("data", "val"),
    ("data", "val_root"),
    ("data", "classes"),
    ("data", "flow_dir"),
    ("data", "features"),
    ("data", "flip_label_map"),
    ("run", "out"),
}
# Settings whose default is unset, and the types they take.
_UNSET_TYPES: dict[tuple[str, str], tuple[type, ...]] = {
    ("run", "workers"): (int,),
    ("recipe", "bn_momentum"): (int, float),
}
# The run folder's own location: a moved or copied run is the same run.
LOCATION = ("run", "out")
# Settings a resumed run may change: they do not change what is trained.
RESUMABLE = {
    ("recipe", "max_steps"),
    ("data", "on_broken"),
    ("run", "workers"),
    ("run", "device"),
    ("run", "checkpoint_every"),
    ("run", "val_every"),
    ("run", "log_every"),
    ("run", "val_chunk"),
}


def _expected_type(section: str, key: str) -> tuple[type, ...]:
    if (section, key) in PATH_SETTINGS:
        return (str,)
    if (section, key) in _UNSET_TYPES:
        return _UNSET_TYPES[section, key]
    default = DEFAULTS[section][key]
    if default is None:
        return (str,)
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, float):
        return (int, float)
    if isinstance(default, (tuple, list)):
        return (list,)
    return (type(default),)


def _check(values: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Known tables and keys, values of the right type; one-line errors naming ``where``."""
    out: dict[str, dict[str, Any]] = {}
    for section, table in values.items():
        if section not in SECTIONS:
            raise InputError(where, f"unknown table [{section}] (known: {', '.join(SECTIONS)})")
        if not isinstance(table, Mapping):
            raise InputError(where, f"{section} must be a table [{section}]")
        for key, value in table.items():
            if key not in DEFAULTS[section]:
                raise InputError(where, f"unknown setting {section}.{key}")
            want = _expected_type(section, key)
            if isinstance(value, bool) and bool not in want:
                raise InputError(where, f"{section}.{key} = {value!r}: expected {want[0].__name__}")
            if not isinstance(value, want):
                raise InputError(where, f"{section}.{key} = {value!r}: expected {want[-1].__name__}")
            if float in want:
                value = float(value)
                if not math.isfinite(value):
                    raise InputError(where, f"{section}.{key} = {value}: not a finite number")
            out.setdefault(section, {})[key] = value
    return out


def _builtin(name: str) -> Path:
    return Path(str(resources.files("i3d.train").joinpath("configs", f"{name}.toml")))


def load_config(spec: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read a config file (or a built-in one by name); relative paths made relative to its folder.

    Raises:
        InputError: ``"FILE: cause"`` for an unreadable file, bad TOML (with
            its line), an unknown table or setting, or a value of the wrong type.
    """
    path = _builtin(str(spec)) if str(spec) in BUILTIN_CONFIGS else Path(spec)
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(path, f"not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise InputError(path, f"not UTF-8 text: {err.reason}") from None
    config = _check(_one_weights_record(values), os.fspath(path))
    base = path.resolve().parent
    for section, key in PATH_SETTINGS:
        value = config.get(section, {}).get(key)
        if value is not None:
            config[section][key] = os.path.normpath(base / Path(value).expanduser())
    return config


def _one_weights_record(values: dict[str, Any]) -> dict[str, Any]:
    """An older config's ``recipe.rgb_weights``/``flow_weights`` read as ``[model] weights``."""
    recipe, model = values.get("recipe"), values.get("model")
    if not isinstance(recipe, dict) or not any(field in recipe for field in _WEIGHTS_FIELDS):
        return values
    recipe = dict(recipe)
    legacy = {field: recipe.pop(field) for field in _WEIGHTS_FIELDS if field in recipe}
    model = dict(model) if isinstance(model, dict) else {}
    data = values.get("data")
    stream = data.get("stream", "rgb") if isinstance(data, dict) else "rgb"
    if "weights" not in model and f"{stream}_weights" in legacy:
        model["weights"] = legacy[f"{stream}_weights"]
    return {**values, "recipe": recipe, "model": model}


def starting_weights(config: Mapping[str, Mapping[str, Any]]) -> str:
    """``[model] weights``, else the recipe's for ``data.stream`` (``rgb_imagenet``, ``flow_imagenet``)."""
    return config["model"]["weights"] or CHARADES_RECIPE.weights(config["data"]["stream"])


def merge(*layers: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """:data:`DEFAULTS` overridden by each layer in turn; paths made absolute (from the working folder)."""
    merged = {section: dict(table) for section, table in DEFAULTS.items()}
    for layer in layers:
        for section, table in layer.items():
            for key, value in table.items():
                if value is not None:
                    merged[section][key] = value
    for section, key in PATH_SETTINGS:
        if merged[section][key] is not None:
            merged[section][key] = os.path.abspath(os.path.expanduser(merged[section][key]))
    recipe = merged["recipe"]
    recipe["lr_milestones"] = list(recipe["lr_milestones"])
    return merged


def recipe_of(config: Mapping[str, Mapping[str, Any]]) -> Recipe:
    """The :class:`Recipe` of a resolved config (``ValueError`` on invalid values)."""
    return Recipe.from_dict(dict(config["recipe"]))


# ---- writing --------------------------------------------------------------------------


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # A TOML basic string: JSON's escapes are TOML's, except that TOML has no "\/".
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        escaped = "".join(c if c >= " " and c != "\x7f" else f"\\u{ord(c):04x}" for c in escaped)
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    raise TypeError(f"{where}: cannot write {type(value).__name__} to TOML")


def dumps(config: Mapping[str, Mapping[str, Any]]) -> str:
    """TOML text of a config: one table per section, unset (``None``) settings left out."""
    lines: list[str] = []
    for section, table in config.items():
        if lines:
            lines.append("")
        lines.append(f"[{section}]")
        for key, value in table.items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value, f'{section}.{key}')}")
    return "\n".join(lines) + "\n"


def write_config(config: Mapping[str, Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write the resolved config atomically."""
    from i3d.atomic import open_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    run = dict(config["run"])
    if run.get("out") is not None and os.path.abspath(run["out"]) == os.path.abspath(path.parent):
        run["out"] = "."  # the file's folder, wherever it is moved
    with open_atomic(path) as f:
        f.write(dumps({**config, "run": run}))
    return path


def differences(
    now: Mapping[str, Mapping[str, Any]], then: Mapping[str, Mapping[str, Any]], ignore: set = RESUMABLE
) -> list[str]:
    """``"section.key: now vs then"`` for each setting that differs, except those in ``ignore``."""
    changed = []
    for section in SECTIONS:
        mine, theirs = now.get(section, {}), then.get(section, {})
        for key in sorted(set(mine) | set(theirs)):
            if (section, key) in ignore:
                continue
            a, b = mine.get(key), theirs.get(key)
            if isinstance(a, tuple):
                a = list(a)
            if isinstance(b, tuple):
                b = list(b)
            if a != b:
                changed.append(f"{section}.{key}: {a!r} vs {b!r}")
    return changed
