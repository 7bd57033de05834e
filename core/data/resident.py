"""Arrays kept on the GPU: whether a run's train and val arrays go there once, and batches of them.

A small set (egfr's 32^3 crops are 64 KiB a case in float16) fits on a card many times over:
copied there once, each batch is an index into device memory, with no per-batch numpy -> torch
conversion, host copy or pinning. A set over the budget keeps the host path (pinned memory,
loader workers). Augmentation runs MONAI transforms on the CPU, one sample at a time, so an
augmented run keeps the host path too.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

RESIDENT_SPLITS = ("train", "val")  # what a trial trains and validates on; test stays on the host
MAX_LOADER_WORKERS = 4  # beyond this a trial's extra CPUs go to torch threads


def resident_bytes(arrays: Mapping[str, np.ndarray], splits: Sequence[str] = RESIDENT_SPLITS) -> int:
    """Bytes of ``<split>/x`` and ``<split>/y`` for ``splits``, in their stored dtypes (float16, uint8)."""
    return sum(int(arrays[f"{split}/{part}"].nbytes) for split in splits for part in "xy")


def device_budget(free_bytes: int, *, fraction: float, share: float) -> int:
    """Bytes a run may keep on its device: ``fraction`` of the free memory times ``share``, the part
    of the device this run holds (``--gpus-per-trial 0.25``: a quarter, as four trials share it)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"device data fraction {fraction!r} must be in [0, 1] (0: never on the device)")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"device share {share!r} must be in (0, 1] (the run's --gpus-per-trial)")
    return int(max(0, free_bytes) * fraction * share)


def keep_on_device(*, nbytes: int, free_bytes: int | None, fraction: float, share: float,
                   augment: bool) -> bool:
    """Whether ``nbytes`` of arrays go to the device once: there is a device (``free_bytes`` not
    None), no CPU augmentation, and they fit ``device_budget``."""
    if free_bytes is None or augment or fraction == 0.0:
        return False
    return nbytes <= device_budget(free_bytes, fraction=fraction, share=share)


def loader_workers(cpus: float, *, cap: int = MAX_LOADER_WORKERS) -> int:
    """Data-loader workers for a run with ``cpus`` CPUs: one CPU stays with the training loop."""
    return max(0, min(cap, int(cpus) - 1))


def data_device(arrays: Mapping[str, np.ndarray], *, fraction: float, share: float,
                augment: bool) -> torch.device | None:
    """The CUDA device to keep ``arrays``' train and val on, or None for the host path (no GPU,
    augmentation, or over budget). Reads the device's free memory now, so arrays already placed
    (another fold's, another trial's) count against it."""
    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda", torch.cuda.current_device())
    free, _ = torch.cuda.mem_get_info(device)
    nbytes = resident_bytes(arrays)
    keep = keep_on_device(nbytes=nbytes, free_bytes=free, fraction=fraction, share=share,
                          augment=augment)
    log.info("train+val arrays %.1f MiB, device budget %.1f MiB (%.0f %% of %.0f MiB free x share "
             "%.2f)%s: %s path", nbytes / 2**20,
             device_budget(free, fraction=fraction, share=share) / 2**20, 100 * fraction,
             free / 2**20, share, ", augmented" if augment else "",
             "device-resident" if keep else "host")
    return device if keep else None


def to_device(array: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """One copy of ``array`` (a memory map or a read-only Ray view is fine) on ``device``, dtype kept."""
    return torch.from_numpy(np.array(array, copy=True)).to(device)


class ResidentDataset(Dataset):
    """Batches indexed from tensors already on their device.

    x: (N, C, *spatial) as stored (float16), handed out as float32 like ``ArrayDataset``;
    y: (N,) int64 labels or (N, *spatial) uint8 masks. ``__getitems__`` makes a DataLoader fetch a
    batch with one index operation; pair it with ``collate=keep_batch``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index].float(), self.y[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long, device=self.x.device)
        return self.x[index].float(), self.y[index]


def keep_batch(batch: Any) -> Any:
    """The DataLoader collate for ``ResidentDataset``: its ``(x, y)`` batch is whole already."""
    return batch
