"""Samplers for distributed runs: exact resume mid-epoch (training) and disjoint shards (evaluation)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DistributedSampler, Sampler

__all__ = ["ResumableSampler", "ShardSampler"]


class ResumableSampler(DistributedSampler):  # type: ignore[type-arg]
    """``DistributedSampler`` that skips the first ``start`` items of the epoch.

    The order of an epoch depends only on ``(seed, epoch)`` (and the rank), so after an interruption at
    step ``s`` setting ``start = s * batch_size`` replays the rest of the epoch exactly, from the next
    batch the interrupted run never saw. Set ``start = 0`` for the next epoch. Works with one process
    (``num_replicas=1, rank=0``) as well.

    Args:
        dataset: the dataset (only its length is used).
        start: items of the epoch to skip.
        **kwargs: ``DistributedSampler`` arguments (``num_replicas``, ``rank``, ``shuffle``, ``seed``,
            ``drop_last``).

    Example:
        >>> sampler = ResumableSampler(range(6), num_replicas=1, rank=0, seed=0)
        >>> order = list(sampler)
        >>> sampler.start = 4
        >>> list(sampler) == order[4:], len(sampler)
        (True, 2)
    """

    def __init__(self, dataset: Any, *, start: int = 0, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return max(0, super().__len__() - self.start)


class ShardSampler(Sampler[int]):
    """Evaluation sampler: rank ``r`` of ``world_size`` reads items ``r, r + world_size, ...``.

    Unlike ``DistributedSampler`` it neither pads nor repeats, so every item is evaluated exactly once
    over all ranks ([`visattn.metrics.PoseEvaluator`][visattn.metrics.PoseEvaluator] gathers them).

    Example:
        >>> list(ShardSampler(5, rank=1, world_size=2))
        [1, 3]
    """

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size) = [0, {world_size}), got {rank}")
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
