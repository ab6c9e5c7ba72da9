"""The in-memory training path (foundry/train/shards.py) and the checkpoint cadence (loop.checkpoint_due),
without Ray: blocks are passed as the blocks themselves, ``get`` is a stand-in for ``ray.get``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from foundry.config import TrainerConfig
from foundry.train import shards
from foundry.train.loop import checkpoint_due


def _blocks(sizes: list[int]) -> tuple[list[dict], list[int]]:
    """Numbered rows in blocks of these sizes: y is the row's global position."""
    blocks, start = [], 0
    for n in sizes:
        idx = np.arange(start, start + n)
        blocks.append({"x_num": np.stack([idx, idx], axis=1).astype(np.float32),
                       "x_cat": (idx % 3).reshape(-1, 1).astype(np.int64), "y": idx.astype(np.float32)})
        start += n
    return blocks, sizes


def _recording_get(fetched: list):
    def get(refs):
        fetched.extend(id(r) for r in refs)
        return list(refs)
    return get


@pytest.mark.parametrize("total,world", [(10, 2), (11, 2), (7, 3), (5, 1), (2, 3)])
def test_train_rows_are_equal_per_worker_and_validation_rows_all_kept(total, world):
    equal = [shards.row_range(total, r, world, equal=True) for r in range(world)]
    assert len({hi - lo for lo, hi in equal}) == 1  # every worker takes the same number of DDP steps
    assert total - sum(hi - lo for lo, hi in equal) < world  # only the remainder is dropped
    part = [shards.row_range(total, r, world, equal=False) for r in range(world)]
    assert part[0][0] == 0 and part[-1][1] == total
    assert all(part[i][1] == part[i + 1][0] for i in range(world - 1))


def test_a_worker_fetches_only_its_blocks_and_gets_its_rows():
    blocks, rows = _blocks([4, 4, 4, 4, 3])
    plan = shards.BlockPlan(refs=blocks, rows=rows, equal=True)  # 19 rows, 2 workers: 9 each
    fetched: list = []
    first = shards.load(plan, 0, 2, get=_recording_get(fetched))
    assert first["y"].tolist() == list(range(0, 9)) and fetched == [id(b) for b in blocks[:3]]
    fetched.clear()
    second = shards.load(plan, 1, 2, get=_recording_get(fetched))
    assert second["y"].tolist() == list(range(9, 18)) and fetched == [id(b) for b in blocks[2:5]]
    assert second["x_num"].dtype == torch.float32 and second["x_cat"].dtype == torch.int64
    assert second["x_num"][:, 0].tolist() == list(range(9, 18))  # columns stay aligned


def test_arrow_blocks_load_like_numpy_ones():
    table = pa.table({"y": pa.array(np.arange(6, dtype=np.float32)), "x_cat": pa.array(np.arange(6))})
    plan = shards.BlockPlan(refs=[table], rows=[6], equal=False)
    out = shards.load(plan, 1, 2, get=lambda refs: list(refs))
    assert out["y"].tolist() == [3.0, 4.0, 5.0] and out["x_cat"].tolist() == [3, 4, 5]


def _epoch(shard, seed):
    return torch.cat([b["y"] for b in shard.iter_batches(4, torch.device("cpu"), shuffle_seed=seed)]).tolist()


def test_training_batches_are_a_seeded_full_shuffle_that_changes_per_epoch():
    blocks, rows = _blocks([10, 7])
    shard = shards.InMemoryShard(shards.load(shards.BlockPlan(blocks, rows, equal=False), 0, 1,
                                             get=lambda refs: list(refs)))
    epoch0, epoch1 = _epoch(shard, 100), _epoch(shard, 101)
    assert sorted(epoch0) == sorted(epoch1) == list(range(17))  # every row exactly once per epoch
    assert epoch0 != list(range(17)) and epoch0 != epoch1  # shuffled, and differently each epoch
    assert _epoch(shard, 100) == epoch0  # seeded: a resumed epoch sees the same order
    sizes = [len(b["y"]) for b in shard.iter_batches(4, torch.device("cpu"), shuffle_seed=1)]
    assert sizes == [4, 4, 4, 4, 1]
    in_order = [b["y"].tolist() for b in shard.iter_batches(8, torch.device("cpu"))]
    assert in_order == [list(range(8)), list(range(8, 16)), [16.0]]  # validation: in order, no shuffle


def test_a_shard_moves_its_tensors_to_the_training_device_once_not_per_batch():
    """The meta device stands in for a GPU (no data, same placement rules): after the first epoch the shard
    holds its tensors there, and every batch, shuffled or not, is sliced there."""
    blocks, rows = _blocks([10, 7])
    shard = shards.InMemoryShard(shards.load(shards.BlockPlan(blocks, rows, equal=False), 0, 1,
                                             get=lambda refs: list(refs)))
    meta = torch.device("meta")
    batches = list(shard.iter_batches(4, meta, shuffle_seed=1)) + list(shard.iter_batches(8, meta))
    assert {v.device.type for b in batches for v in b.values()} == {"meta"}
    held = shard.tensors
    assert {v.device.type for v in held.values()} == {"meta"} and [len(b["y"]) for b in batches] == [4, 4, 4, 4, 1, 8, 8, 1]
    list(shard.iter_batches(4, meta, shuffle_seed=2))
    assert all(shard.tensors[k] is held[k] for k in held)  # the next epoch moves nothing again


def test_a_split_in_the_plan_is_held_in_memory_and_the_others_stream(monkeypatch):
    import ray.train

    blocks, rows = _blocks([5])
    monkeypatch.setattr(ray.train, "get_dataset_shard", lambda name: f"iterator:{name}")
    plan = {"train": shards.BlockPlan(blocks, rows, True)}
    held = shards.worker_shard("train", plan, 0, 1, get=lambda refs: list(refs))
    streamed = shards.worker_shard("val", plan, 0, 1, get=lambda refs: list(refs))
    assert isinstance(held, shards.InMemoryShard) and held.rows == 5
    assert isinstance(streamed, shards.StreamingShard) and streamed.iterator == "iterator:val"


def test_checkpoint_cadence():
    # every epoch when the setting is 0
    assert checkpoint_due(now=0.1, last=0.0, every_s=0.0, final=False)
    # on a cadence: not before every_s seconds, then yes; the last epoch always
    assert not checkpoint_due(now=5.0, last=0.0, every_s=30.0, final=False)
    assert checkpoint_due(now=30.0, last=0.0, every_s=30.0, final=False)
    assert checkpoint_due(now=1.0, last=0.0, every_s=30.0, final=True)


def test_the_shipped_trainer_defaults_keep_the_fast_paths_on():
    from foundry import config

    t = config.load([]).trainer
    assert t.in_memory_max_mb > 0 and t.controller_poll_s < 2.0
    assert TrainerConfig().in_memory_max_mb > 0
