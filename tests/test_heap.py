"""Freed memory kept in the process for the next forward pass (i3d.heap)."""

from __future__ import annotations

import dataclasses
import platform
import subprocess
import sys

import pytest
import torch

from i3d import heap
from i3d.fast import InferenceOptions
from i3d.model import InceptionI3d
from i3d.runtime import prepare

MIB = 2**20
BLOCKS = (48, 80, 40)  # MiB, each over glibc's largest mmap threshold (32 MiB)
PAGES = sum(BLOCKS) * MIB // 4096  # the page faults of a pass whose blocks all come fresh from the kernel

# A pass allocates, writes and frees blocks the way a forward pass does its
# activations. It runs in a fresh interpreter: the setting is process-wide.
_PROBE = f"""
import resource, torch
from i3d import heap

def rss_pages():
    return int(open("/proc/self/statm").read().split()[1])

def one_pass():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = torch.empty({BLOCKS[0] * MIB // 4}).fill_(1.0)
    b = torch.empty({BLOCKS[1] * MIB // 4}).fill_(1.0)
    del a
    c = torch.empty({BLOCKS[2] * MIB // 4}).fill_(1.0)
    del b, c
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

print(heap.keep_freed_memory())
for _ in range(12):
    print(one_pass(), rss_pages())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the heap setting is glibc's")
def test_freed_blocks_are_reused_without_page_faults():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    kept, *rows = out.splitlines()
    assert kept == "True"
    passes = [tuple(map(int, row.split())) for row in rows]
    # The heap grows over the first passes (the aligned blocks leave holes
    # that later passes fill); then a pass takes no new page, where glibc's
    # default hands every block back and faults all PAGES in again (fewer
    # with transparent huge pages). A few faults may come from the interpreter.
    last = passes[-4:]
    assert all(faults < PAGES // 100 for faults, _ in last), passes
    held = [rss for _, rss in last]
    assert max(held) - min(held) < PAGES // 100, passes  # and the memory held stops growing


def test_prepare_keeps_freed_memory_on_the_cpu_unless_switched_off(monkeypatch):
    calls: list[bool] = []
    monkeypatch.setattr(heap, "keep_freed_memory", lambda: calls.append(True) or True)
    model = InceptionI3d(final_endpoint="Conv3d_1a_7x7")
    cpu = torch.device("cpu")
    prepare(model, cpu, "fp32")
    assert calls == [True]
    prepare(model, cpu, "fp32", options=dataclasses.replace(InferenceOptions(), keep_freed_memory=False))
    prepare(model, cpu, "fp32", options=InferenceOptions.off())
    assert calls == [True]
