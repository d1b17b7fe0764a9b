"""The network as one compiled OpenVINO graph, for whole inputs on the CPU.

``--backend openvino`` runs every network call on a *whole* input (a batch
of fixed-length clips, or a video that fits in one chunk) through one
OpenVINO graph of the model: the export form of :mod:`i3d.export` (SAME
padding computed in the graph, dynamic batch and time, and frame size where
the export allows), converted with ``openvino.convert_model`` and compiled
for the CPU. One pass over a whole input is exactly what chunked inference
reproduces, so the results agree with torch's within float rounding.

Longer inputs, which :mod:`i3d.chunked` cuts into chunks, keep running in
torch: per-stage OpenVINO graphs (what exact chunking needs) measured slower
than torch (benchmarks/bench_openvino_stages.py), whereas the whole graph
runs faster (benchmarks/bench_runtimes.py).

A compiled graph is kept per model (weakly: it goes with the model) and per
(output, precision, frame size where fixed, thread count), and rebuilt when
a parameter or statistic of the model changes (a new storage or in-place
version, as :class:`i3d.fast.FoldCache` sees it, or a ``load_state_dict``).
Converting takes seconds (~15 s on a 2-core CPU), once per key, announced
by one line on stderr (:func:`i3d.console.note`; a command's ``--quiet``
silences it).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch

from i3d import console
from i3d.choices import OPENVINO_PRECISIONS
from i3d.model import InceptionI3d

__all__ = ["whole_graph", "compiled_model"]

# What the note before a conversion says of its cost: the README's figure,
# convert_model plus compile_model of the whole network on a 2-core CPU.
_CONVERSION_COST = "once per model, output and precision: ~15 s on 2 cores"

# Per model: {key: compiled model}, dropped with the model.
_compiled: weakref.WeakKeyDictionary[InceptionI3d, dict[tuple, Any]] = weakref.WeakKeyDictionary()


def _weights_key(model: InceptionI3d) -> tuple:
    """Identifies the current values of the model's parameters and statistics."""
    return tuple(
        (t.data_ptr(), None if t.is_inference() else t._version) for t in model.state_dict(keep_vars=True).values()
    )


def _drop_graphs(model: InceptionI3d, incompatible_keys: Any) -> None:
    _compiled[model].clear()  # the model keeps its (one) hook


def compiled_model(model: InceptionI3d, output: str, precision: str, height: int, width: int) -> Any:
    """The ``openvino.CompiledModel`` of ``model`` up to ``output`` for
    frames of ``height`` x ``width`` (input ``(B, C, T, H, W)`` float32),
    converted and compiled on the first call, then cached."""
    import openvino

    from i3d.export.writers import dynamic_spatial, exported_program

    threads = torch.get_num_threads()
    frame = None if dynamic_spatial(output, min(height, width)) else (height, width)
    key = (output, precision, frame, threads, _weights_key(model))
    if model not in _compiled:
        # Inference tensors (a model built in torch.inference_mode) keep no
        # version for _weights_key to see: a load drops the graphs outright.
        model.register_load_state_dict_post_hook(_drop_graphs)
    cache = _compiled.setdefault(model, {})
    if key not in cache:
        for old in [k for k in cache if k[4] != key[4]]:
            del cache[old]  # the weights changed: those graphs are stale
        # Seconds of silence otherwise, at the start of a command, that look like a hang.
        console.note(f"converting the network for OpenVINO ({output}, {precision}; {_CONVERSION_COST})")
        # Traced outside the caller's inference mode and autocast: the graph is float32, its precision OpenVINO's.
        with torch.inference_mode(False), torch.autocast("cpu", enabled=False), warnings.catch_warnings():
            # torch's pytree deprecations that conversion trips over say nothing to a user of predict or extract.
            warnings.simplefilter("ignore", FutureWarning)
            program = exported_program(model, output, height, width)
            ir = openvino.convert_model(program)
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision],
            "PERFORMANCE_HINT": "LATENCY",  # one request at a time, all threads on it
        }
        cache[key] = openvino.Core().compile_model(ir, "CPU", config)
    return cache[key]


def whole_graph(model: InceptionI3d, output: str, precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function running whole inputs ``(B, C, T, H, W)`` through ``model``
    up to ``output`` in OpenVINO, giving float32 ``(B, C', T', ...)``: what
    :class:`i3d.chunked.ChunkedI3d` calls for an input pushed in one piece."""

    def run(x: torch.Tensor) -> torch.Tensor:
        compiled = compiled_model(model, output, precision, x.shape[3], x.shape[4])
        request = compiled.create_infer_request()
        # The input is read in place (share_inputs); the output is copied out of
        # the request's memory, which the request would reuse.
        request.infer([x.detach().float().contiguous().numpy()], share_inputs=True)
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    return run
