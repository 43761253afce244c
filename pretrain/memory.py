"""Where a batch's tensors live: chosen to be cheap to fill and to hand over.

Fresh pages cost as much as the transforms: a fresh 38 MB float32 batch
costs the kernel about 10,000 page faults and zeroed pages before a pixel is
written, about as long as cropping and jittering it. Handing float32 batches
from worker processes to the main process costs 1.2 MB of shared memory a
pair; ``output="uint8"`` hands over a quarter of that and leaves the float
conversion and normalisation to the GPU (:func:`pretrain.augment.to_float`).
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

__all__ = ["BatchMemory"]


class BatchMemory:
    """Memory for batch tensors; public torch and numpy API only.

    * In the main process: ordinary memory, *reused* once nothing refers to
      it any more (no tensor, view, detached tensor, storage or numpy array
      of an earlier batch alive).
    * In a DataLoader worker (``shared``): shared memory from the start, so
      that handing the batch to the main process sends a file descriptor
      instead of copying it there (what the DataLoader otherwise does). Such
      a tensor is a pooled one moved by ``share_memory_()``: torch copies the
      (warm, reused) buffer into fresh shared memory and lets go of the
      buffer, which serves the next tensor. A fresh ``torch.empty(...)``
      there would cost its page faults again on every batch.

    How reuse knows: the pool keeps each buffer as a numpy array and hands
    out a tensor made with ``torch.from_numpy`` of a fresh numpy view of it,
    of which the pool keeps only a weak reference. The torch storage that
    ``from_numpy`` makes holds the view until the last tensor, view, storage
    or numpy array sharing that storage is gone (or the storage moves to
    shared memory with ``share_memory_()``); the weak reference dies then,
    and the buffer is free.
    """

    KEEP = 6  # buffers kept for reuse: a few batches of two views

    def __init__(self, shared: bool) -> None:
        self.shared = shared
        self._pool: list[tuple[np.ndarray, weakref.ref]] = []  # (nbytes,) uint8 buffer, its last hand-out

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised C-contiguous tensor of ``shape`` and ``dtype``."""
        if self.shared:  # moving a pooled buffer's tensor copies warm bytes and frees the buffer at once
            return self._pooled(shape, dtype).share_memory_()
        return self._pooled(shape, dtype)

    def _pooled(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        nbytes = int(np.prod(shape)) * dtype.itemsize
        for k, (buffer, handed) in enumerate(self._pool):
            if buffer.nbytes == nbytes and handed() is None:
                tensor, self._pool[k] = self._hand_out(buffer, shape, dtype)
                return tensor
        buffer = torch.empty(nbytes, dtype=torch.uint8).numpy()  # torch's allocator: aligned as torch.empty
        tensor, entry = self._hand_out(buffer, shape, dtype)
        if len(self._pool) < self.KEEP:
            self._pool.append(entry)
        return tensor

    @staticmethod
    def _hand_out(buffer: np.ndarray, shape: tuple[int, ...],
                  dtype: torch.dtype) -> tuple[torch.Tensor, tuple[np.ndarray, weakref.ref]]:  # fmt: skip
        view = buffer.view()  # held by the tensor's storage alone
        return torch.from_numpy(view).view(dtype).view(shape), (buffer, weakref.ref(view))
