"""Frames from a decoding worker to the model: the pipe of
:mod:`i3d.extract.pipeline` against torch's tensor queue.

The baseline is what the pipeline used before: ``torch.multiprocessing``
queues, which send a tensor as a file descriptor of shared memory that the
worker must serve until it is received (a worker killed with a chunk in
flight broke the consumer). The pipeline now sends the raw bytes through a
pipe: a copy on each side. Both cases receive ``--chunks`` chunks of
``(3, --frames, --size, --size)`` float32 from a spawned process that makes
each one (``np.ones``); the first chunk, which waits for the start-up, is
not timed. Prints ms per chunk and the ratio to the baseline.

    python benchmarks/bench_transfer.py                 # 64 frames of 224x224 (38.5 MB a chunk)
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np


def _torch_worker(q, shape: tuple[int, ...], count: int) -> None:
    import torch

    for _ in range(count + 1):
        q.put(torch.from_numpy(np.ones(shape, np.float32)))
    q.put(None)
    time.sleep(60)  # serve the shared memory until the consumer is done


def _pipe_worker(conn, shape: tuple[int, ...], count: int) -> None:
    from i3d.extract.pipeline import Chunk, Finished, send_message

    for i in range(count + 1):
        send_message(conn, i, Chunk(np.ones(shape, np.float32)))
    send_message(conn, count + 1, Finished())
    conn.close()


def torch_queue(shape: tuple[int, ...], count: int) -> float:
    import torch.multiprocessing as tmp

    ctx = tmp.get_context("spawn")
    q = ctx.Queue(maxsize=4)
    proc = ctx.Process(target=_torch_worker, args=(q, shape, count), daemon=True)
    proc.start()
    q.get()
    start = time.perf_counter()
    while (x := q.get()) is not None:
        x.sum()  # touch it, as the model would
    seconds = (time.perf_counter() - start) / count
    proc.kill()
    return seconds


def pipe(shape: tuple[int, ...], count: int) -> float:
    import torch

    from i3d.extract.pipeline import Chunk, receive_message

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_pipe_worker, args=(send, shape, count), daemon=True)
    proc.start()
    send.close()
    receive_message(receive)
    start = time.perf_counter()
    while isinstance(message := receive_message(receive)[1], Chunk):
        torch.from_numpy(message.frames).sum()
    seconds = (time.perf_counter() - start) / count
    proc.join()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=64, help="frames per chunk (default: 64)")
    parser.add_argument("--size", type=int, default=224, help="crop side (default: 224)")
    parser.add_argument("--chunks", type=int, default=20, help="chunks timed per case (default: 20)")
    args = parser.parse_args()
    shape = (3, args.frames, args.size, args.size)
    megabytes = np.prod(shape) * 4 / 1e6
    baseline = torch_queue(shape, args.chunks)
    ours = pipe(shape, args.chunks)
    print(f"chunks of {shape} float32, {megabytes:.1f} MB")
    print(f"torch tensor queue (baseline): {baseline * 1e3:8.1f} ms/chunk")
    print(f"pipe, raw bytes (pipeline):    {ours * 1e3:8.1f} ms/chunk  ({ours / baseline:.2f}x the baseline)")


if __name__ == "__main__":
    main()
