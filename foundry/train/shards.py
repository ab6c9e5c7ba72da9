"""A worker's share of a materialized split held as torch tensors, instead of streamed through Ray Data.

Why: on small tabular models, Ray Data's per-batch iteration (a streaming split coordinator actor per
dataset, background prefetch threads, Arrow -> numpy -> torch collation of every batch, and a local
shuffle buffer) cost 34-56% of an epoch against a plain PyTorch loop on the same rows, and setting the
split up cost seconds at start-up. A materialized split already sits in the object store, so a worker
can pull its rows once, keep them as tensors, and per epoch shuffle them with ``torch.randperm`` (a
full shuffle of the shard, better than the 4-batch local shuffle buffer) and slice batches.

The decision is made once, on the driver (``plan``), from the split's size in the object store: a
split whose per-worker share fits ``trainer.in_memory_max_mb`` travels as block references in the
loop's config and is not given to Ray Train as a dataset at all (no split coordinator); any other
split (too big, not materialized, or the setting is 0) is streamed as before. Every worker follows the
same plan, so the collective calls stay aligned.

Rows are split by position, exactly ``total // workers`` training rows per worker (the remainder, at
most ``workers - 1`` rows, is left out, as ``streaming_split(equal=True)`` does): DDP needs every
worker to take the same number of steps. Validation rows are all kept (the loss is all-reduced as a
sum over rows, so uneven shares are fine).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

# Splits whose rows must be equal on every worker (each batch is a DDP step).
EQUAL_SPLITS = ("train",)


@dataclass(frozen=True)
class BlockPlan:
    """One split's blocks in order: ObjectRefs (or, in tests, the blocks themselves) and their row counts."""

    refs: list
    rows: list[int]
    equal: bool

    @property
    def total_rows(self) -> int:
        return sum(self.rows)


def plan(datasets: dict, num_workers: int, max_mb_per_worker: float) -> dict[str, BlockPlan]:
    """The splits to hold in memory: materialized ones whose per-worker share is at most the budget.

    Runs on the driver and reads only metadata (block references and row counts), nothing is fetched."""
    from ray.data.dataset import MaterializedDataset

    chosen: dict[str, BlockPlan] = {}
    if max_mb_per_worker <= 0:
        return chosen
    for name, ds in datasets.items():
        if not isinstance(ds, MaterializedDataset):
            continue
        if ds.size_bytes() / num_workers > max_mb_per_worker * 2**20:
            continue
        refs, rows = [], []
        for bundle in ds.iter_internal_ref_bundles():
            for entry in bundle.blocks:  # BlockEntry (ref, metadata); a (ref, metadata) pair before Ray 2.5x
                ref, meta = (entry.ref, entry.metadata) if hasattr(entry, "ref") else entry
                refs.append(ref)
                rows.append(int(meta.num_rows))
        chosen[name] = BlockPlan(refs=refs, rows=rows, equal=name in EQUAL_SPLITS)
    return chosen


def row_range(total: int, rank: int, world: int, equal: bool) -> tuple[int, int]:
    """[start, end) of this worker's rows: equal shares (remainder dropped) or a partition of all rows."""
    if equal:
        per = total // world
        return rank * per, (rank + 1) * per
    return rank * total // world, (rank + 1) * total // world


def _block_to_numpy(block) -> dict[str, np.ndarray]:
    if isinstance(block, dict):
        return block
    from ray.data.block import BlockAccessor

    out = BlockAccessor.for_block(block).to_numpy()
    return out if isinstance(out, dict) else {"data": out}


def load(block_plan: BlockPlan, rank: int, world: int, get: Callable[[list], list] | None = None
         ) -> dict[str, torch.Tensor]:
    """This worker's rows as tensors. Only the blocks that overlap its row range are fetched (``get``:
    ``ray.get``; tests pass the blocks themselves)."""
    if get is None:
        import ray

        get = ray.get
    start, end = row_range(block_plan.total_rows, rank, world, block_plan.equal)
    wanted, offset = [], 0
    for i, n in enumerate(block_plan.rows):
        lo, hi = max(start - offset, 0), min(end - offset, n)
        if lo < hi:
            wanted.append((i, lo, hi))
        offset += n
    blocks = get([block_plan.refs[i] for i, _, _ in wanted]) if wanted else []
    parts: dict[str, list[np.ndarray]] = {}
    for (_, lo, hi), block in zip(wanted, blocks, strict=True):
        for k, v in _block_to_numpy(block).items():
            parts.setdefault(k, []).append(np.asarray(v)[lo:hi])
    # One copy out of the (read-only, shared) object store buffers into this process's own memory.
    return {k: torch.from_numpy(np.ascontiguousarray(np.concatenate(v))) for k, v in parts.items()}


class InMemoryShard:
    """Batches from tensors: a seeded full permutation per epoch for training, in order for validation."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self.rows = len(next(iter(tensors.values()))) if tensors else 0

    def on(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The tensors on ``device``, moved there once: a GPU worker then slices its batches where it trains
        instead of copying every batch to the GPU (``trainer.in_memory_max_mb`` bounds what is moved)."""
        if any(v.device != device for v in self.tensors.values()):
            self.tensors = {k: v.to(device) for k, v in self.tensors.items()}
        return self.tensors

    def iter_batches(self, batch_size: int, device: torch.device, shuffle_seed: int | None = None
                     ) -> Iterator[dict[str, torch.Tensor]]:
        tensors = self.on(device)
        if shuffle_seed is None:
            for i in range(0, self.rows, batch_size):
                yield {k: v[i:i + batch_size] for k, v in tensors.items()}
            return
        # Drawn on the CPU from the seed (the same order on every device), then moved with the data.
        order = torch.randperm(self.rows, generator=torch.Generator().manual_seed(shuffle_seed)).to(device)
        for i in range(0, self.rows, batch_size):
            idx = order[i:i + batch_size]
            yield {k: v[idx] for k, v in tensors.items()}


class StreamingShard:
    """The Ray Data path: the worker's ``DataIterator`` (streaming split), with a local shuffle buffer."""

    def __init__(self, iterator):
        self.iterator = iterator

    def iter_batches(self, batch_size: int, device: torch.device, shuffle_seed: int | None = None):
        if shuffle_seed is None:
            return self.iterator.iter_torch_batches(batch_size=batch_size, device=device)
        return self.iterator.iter_torch_batches(batch_size=batch_size, device=device,
                                                local_shuffle_buffer_size=4 * batch_size,
                                                local_shuffle_seed=shuffle_seed)


def worker_shard(name: str, in_memory: dict[str, BlockPlan], rank: int, world: int,
                 get: Callable[[list], list] | None = None):
    """The shard this worker iterates for split ``name``: in memory when planned, else Ray Data's."""
    if name in in_memory:
        return InMemoryShard(load(in_memory[name], rank, world, get=get))
    import ray.train

    return StreamingShard(ray.train.get_dataset_shard(name))
