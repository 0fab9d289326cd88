"""Random projection of long gradient vectors, block by block, into float16 memory-mapped feature files.

A Gaussian d×k matrix for LoRA gradients (d in the millions) would not fit in memory, so it is never formed: the
gradient is cut into blocks of `block` coordinates, and block j's k×block slice of the matrix is regenerated from
the seed (seed, j) whenever it is needed. Every caller with the same seed therefore gets the same projection,
which is what comparing training and target features requires (Johnson–Lindenstrauss; LESS, Xia et al. 2024).
Entries are N(0, 1/k), so inner products are preserved in expectation.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch


class BlockProjector:
    def __init__(self, dim: int, k: int, *, seed: int = 0, block: int = 16384):
        if k < 1 or dim < 1:
            raise ValueError(f"projection needs dim >= 1 and k >= 1, got dim={dim}, k={k}")
        self.dim, self.k, self.seed, self.block = int(dim), int(k), int(seed), int(block)

    def _block(self, j: int, width: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + j)
        return torch.randn(width, self.k, generator=g) / self.k ** 0.5

    def __call__(self, grads: torch.Tensor) -> torch.Tensor:
        """[b, dim] → [b, k]; only one block × k slice of the matrix exists at a time."""
        if grads.shape[1] != self.dim:
            raise ValueError(f"gradient width {grads.shape[1]} does not match the projector's {self.dim}")
        out = torch.zeros(grads.shape[0], self.k, dtype=torch.float32)
        for j, start in enumerate(range(0, self.dim, self.block)):
            chunk = grads[:, start: start + self.block].float()
            out += chunk @ self._block(j, chunk.shape[1])
        return out

    def flops(self, rows: int) -> float:
        return 2.0 * rows * self.dim * self.k


class FeatureStore:
    """An [n, k] float16 array on disk (np.memmap), filled row block by row block."""

    def __init__(self, n: int, k: int, directory: str | Path | None = None, name: str = "features"):
        self._tmp = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="budgetune-features-")
            directory = self._tmp.name
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.path = Path(directory) / f"{name}.f16"
        self.array = np.memmap(self.path, dtype=np.float16, mode="w+", shape=(n, k))

    def write(self, rows: np.ndarray, values: torch.Tensor) -> None:
        self.array[rows] = values.numpy().astype(np.float16)

    def read(self) -> np.ndarray:
        self.array.flush()
        return np.asarray(self.array, dtype=np.float32)


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosine_blocks(store: FeatureStore, other: np.ndarray, rows: int = 4096):
    """(row slice, cosines [rows, len(other)]) of the store's rows against `other`, `rows` rows of the memory map
    at a time, so a pool's features are never all in memory."""
    store.array.flush()
    unit_other = unit_rows(np.asarray(other, dtype=np.float32))
    for start in range(0, store.array.shape[0], rows):
        block = slice(start, min(start + rows, store.array.shape[0]))
        yield block, unit_rows(np.asarray(store.array[block], dtype=np.float32)) @ unit_other.T


def project_stream(stream, projector: BlockProjector, store: FeatureStore, *, transform=None,
                   group_rows: int = 128) -> float:
    """Project (indices, gradients, flops) micro-batches into `store`, `group_rows` rows per projection pass.

    Grouping rows amortises regenerating the projection blocks (a d×k draw per pass) over many examples; the
    gradients wait in float16 meanwhile. `transform` (e.g. Adam preconditioning) is applied before projecting.
    Returns the FLOPs spent: the gradients' own plus the projections'.
    """
    flops = 0.0
    rows: list[np.ndarray] = []
    buffer: list[torch.Tensor] = []

    def flush() -> float:
        if not rows:
            return 0.0
        grads = torch.cat(buffer).float()
        index = np.concatenate(rows)
        store.write(index, projector(grads))
        rows.clear()
        buffer.clear()
        return projector.flops(len(index))

    for idx, grads, f in stream:
        flops += f
        if transform is not None:
            grads = transform(grads)
        rows.append(np.asarray(idx))
        buffer.append(grads.half())
        if sum(len(r) for r in rows) >= group_rows:
            flops += flush()
    return flops + flush()
