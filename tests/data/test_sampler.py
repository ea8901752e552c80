from __future__ import annotations

import pytest

from visattn.data import ResumableSampler, ShardSampler


@pytest.mark.parametrize("replicas", [1, 3])
def test_resumable_sampler_replays_the_rest_of_an_epoch(replicas: int) -> None:
    data = range(23)
    for rank in range(replicas):
        sampler = ResumableSampler(data, num_replicas=replicas, rank=rank, seed=4, drop_last=True)
        sampler.set_epoch(2)
        full = list(sampler)
        for start in (0, 1, 5, len(full)):
            sampler.start = start
            assert list(sampler) == full[start:]
            assert len(sampler) == len(full) - start
        sampler.start = 0
        sampler.set_epoch(3)
        assert list(sampler) != full  # another epoch, another order


def test_shard_sampler_covers_every_item_once() -> None:
    shards = [list(ShardSampler(10, rank, 3)) for rank in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(10))
    assert shards[1] == [1, 4, 7]
    assert len(ShardSampler(10, 2, 3)) == 3
    with pytest.raises(ValueError, match=r"rank must be in \[0, world_size\)"):
        ShardSampler(10, 3, 3)
