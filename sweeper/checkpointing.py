"""Checkpoints written off the training thread: a snapshot of the state taken at the epoch, serialized,
written, fsync'ed and renamed into place by a background thread while the next epoch trains.

Serializing the reference ViT's state (model + AdamW moments, ~130 tensors) costs ~5 ms of pickling
per epoch and the write with fsync ~2 ms (benchmarks/bench_train.py); the snapshot costs well under 1 ms.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None))


def snapshot(state: Any) -> Any:
    """A copy of `state` that later training steps cannot change: every tensor's storage copied to CPU
    memory once (views and tied weights keep sharing it, as torch.save would write them), dicts, lists
    and tuples rebuilt, anything else deep-copied. Tensors come back on the CPU, as a checkpoint loaded
    with map_location="cpu" has them."""
    import torch  # here: a command trial's Run never checkpoints and should not pay for torch

    return _copy(state, {}, {}, torch)


def _copy(obj: Any, storages: dict, memo: dict, torch) -> Any:
    if isinstance(obj, _IMMUTABLE) or isinstance(obj, (torch.dtype, torch.device, torch.Size)):
        return obj
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, torch.Tensor):
        result = _copy_tensor(obj, storages, torch)
    elif type(obj) in (dict, OrderedDict):
        result = type(obj)((key, _copy(value, storages, memo, torch)) for key, value in obj.items())
    elif type(obj) in (list, tuple):
        result = type(obj)(_copy(value, storages, memo, torch) for value in obj)
    else:
        result = copy.deepcopy(obj, memo)
    memo[id(obj)] = result
    return result


def _copy_tensor(tensor, storages: dict, torch):
    tensor = tensor.detach()
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type == "meta":
        return tensor.to("cpu", copy=True)
    storage = tensor.untyped_storage()
    key = (storage.device, storage.data_ptr(), storage.nbytes())
    copied = storages.get(key)
    if copied is None:
        copied = storages[key] = storage.clone() if storage.device.type == "cpu" else storage.cpu()
    return torch.empty(0, dtype=tensor.dtype).set_(
        copied, tensor.storage_offset(), tensor.size(), tensor.stride()
    )


class BackgroundWriter:
    """At most one write of this writer in flight. `wait` blocks until it is done and raises what it
    raised, once; `submit` waits for the previous write first, so writes land in order and no file is
    written by two threads. The writes of every Run of a process go to one long-lived thread: starting a
    thread per write made the training thread wait for the new one to take the GIL (~5 ms, the switch
    interval). Its pending writes are finished before the interpreter exits (a requeue's sys.exit)."""

    def __init__(self) -> None:
        self._pending: Future | None = None

    def submit(self, write: Callable[[], None]) -> None:
        self.wait()
        self._pending = _executor().submit(write)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()


_EXECUTOR: tuple[int, ThreadPoolExecutor] | None = None  # (the pid it was made in, the executor)


def drain() -> None:
    """Block until every write queued in this process so far has ended (whichever writer queued it):
    the thread runs them in order, so a no-op's turn comes after them. A second Run of the same run dir
    in one process (a retry, a test) reads last.pt only after the first Run's write has landed."""
    if _EXECUTOR is not None and _EXECUTOR[0] == os.getpid():
        _EXECUTOR[1].submit(lambda: None).result()


def _executor() -> ThreadPoolExecutor:
    global _EXECUTOR
    if _EXECUTOR is None or _EXECUTOR[0] != os.getpid():  # a forked child has the object, not the thread
        _EXECUTOR = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweeper-checkpoint"))
    return _EXECUTOR[1]
