"""Host <-> GPU copies for one backend: its own CUDA stream, pinned memory, non-blocking copies.

Both GPU backends (torch on CUDA, TensorRT) move batches through a :class:`CudaTransfers`:

* work is enqueued on a stream of the backend's own, never on the legacy default stream
  (which synchronizes with every other stream of the device and makes TensorRT warn on each
  batch);
* host buffers are page-locked (pinned), so copies are real asynchronous DMA, and come from
  PyTorch's caching host allocator, so pinning costs nothing after the first batches;
* results come back as C-contiguous float32 arrays that own their memory (a pinned block
  returns to the allocator's cache when the array is dropped).

Not run on these machines (no GPU here): it follows PyTorch's documented CUDA semantics
(``torch.cuda.Stream``, ``torch.cuda.stream``, ``Tensor.pin_memory``, ``Tensor.to(...,
non_blocking=True)``, ``Stream.synchronize``). The tests drive it with a stand-in ``torch``
that records which stream, which memory and which copies it was asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class CudaTransfers:
    """Copies for one backend on one CUDA device, on a stream of its own.

    Parameters
    ----------
    device:
        ``cuda`` or ``cuda:N``.
    torch_module:
        PyTorch (a stand-in in tests).
    """

    def __init__(self, device: Any, torch_module: Any = None) -> None:
        if torch_module is None:
            import torch as torch_module
        self.torch = torch_module
        self.device = torch_module.device(device)
        with torch_module.cuda.device(self.device):
            self.stream = torch_module.cuda.Stream(device=self.device)

    @property
    def handle(self) -> int:
        """The raw ``cudaStream_t`` (for TensorRT's ``execute_async_v3``)."""
        return int(self.stream.cuda_stream)

    def on_device(self):
        """Context: CUDA calls go to this device (contexts, allocations, kernels)."""
        return self.torch.cuda.device(self.device)

    def on_stream(self):
        """Context: kernels and allocations are enqueued on this backend's stream."""
        return self.torch.cuda.stream(self.stream)

    def to_device(self, batch: np.ndarray, dtype: Any = None) -> Any:
        """The batch on the GPU (as ``dtype``), copied from pinned memory without blocking."""
        torch = self.torch
        host = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).pin_memory()
        with self.on_stream():
            tensor = host.to(self.device, non_blocking=True)
            if dtype is not None and dtype != torch.float32:
                tensor = tensor.to(dtype)
        return tensor

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """An uninitialised GPU tensor owned by this backend's stream."""
        with self.on_stream():
            return self.torch.empty(tuple(shape), dtype=dtype, device=self.device)

    def to_host(self, tensor: Any) -> np.ndarray:
        """The tensor as a C-contiguous float32 array; waits for this stream only."""
        torch = self.torch
        with self.on_stream():
            values = tensor.float().contiguous()
            host = torch.empty(tuple(values.shape), dtype=torch.float32, pin_memory=True)
            host.copy_(values, non_blocking=True)
        self.stream.synchronize()
        return host.numpy()
