"""Checkpoints written off the training thread: a snapshot of the state taken at the epoch, serialized,
written, fsync'ed and renamed into place by a background thread while the next epoch trains; and the
built-in trainer's optimizer state packed into a few flat tensors for it.

What a checkpoint costs is per tensor, not per byte: torch.save pickles each tensor through Python
(~100 us each on this 2-core machine) and the snapshot copies each storage. The reference ViT's state is
130 tensors, 96 of them AdamW's step and moments; packed, those are 3, and the checkpoint's CPU time per
epoch in the training loop dropped from 43-56 to 15-20 ms (benchmarks/bench_train.py, docs/design.md).
"""

from __future__ import annotations

import copy
import math
import os
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None))
PACKED = "sweeper.packed_optimizer"  # marks an optimizer state made by pack_optimizer_state


def pack_optimizer_state(state_dict: dict[str, Any]) -> dict[str, Any]:
    """An optimizer's state_dict() with the per-parameter tensors of each state name (AdamW's `step`,
    `exp_avg`, `exp_avg_sq`) concatenated into one flat tensor per name and dtype; other values as they
    are. `unpack_optimizer_state` gives the state_dict back, equal value for value."""
    import torch

    per_param: dict[Any, dict[str, Any]] = {}
    groups: dict[tuple[str, Any, Any], list[tuple[Any, Any]]] = {}
    for param_id, values in state_dict["state"].items():
        per_param[param_id] = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor) and value.layout == torch.strided:
                groups.setdefault((name, value.dtype, value.device), []).append((param_id, value))
            else:
                per_param[param_id][name] = value
    flat = [
        (
            name,
            torch.cat([value.detach().reshape(-1) for _, value in members]),
            [(i, tuple(v.shape)) for i, v in members],
        )
        for (name, _, _), members in groups.items()
    ]
    return {PACKED: 1, "param_groups": state_dict["param_groups"], "state": per_param, "flat": flat}


def unpack_optimizer_state(packed: dict[str, Any]) -> dict[str, Any]:
    """The state_dict that pack_optimizer_state packed (each tensor its own copy); any other dict (a
    checkpoint written before packing) as it is."""
    if PACKED not in packed:
        return packed
    state = {param_id: dict(values) for param_id, values in packed["state"].items()}
    for name, flat, members in packed["flat"]:
        start = 0
        for param_id, shape in members:
            size = math.prod(shape)
            state[param_id][name] = flat[start : start + size].reshape(shape).clone()
            start += size
    return {"state": state, "param_groups": packed["param_groups"]}


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
