"""The authors' optimisation recipe: a lower learning rate for the reasoner, with a warm-up.

The visattn layer trains with AdamW like the pose model it sits in, but its transformer blocks (the
reasoner's embedding, blocks, norm and projection; not VisNet) at a tenth of the learning rate and
with a linear warm-up, on a per-iteration cosine (or step) schedule.
[`param_groups`][visattn.optim.param_groups] splits a model's parameters that way (no weight decay on biases
and norm parameters), and [`lr_lambdas`][visattn.optim.lr_lambdas] gives the schedule of each group for
``torch.optim.lr_scheduler.LambdaLR``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from torch import nn

from visattn._checks import check_choice, check_nonnegative_int, check_positive_int, check_probability

__all__ = ["SCHEDULES", "lr_lambdas", "param_groups"]

#: Learning-rate schedules of [`lr_lambdas`][visattn.optim.lr_lambdas].
SCHEDULES = ("cosine", "step")


def param_groups(
    model: nn.Module, *, lr: float, reasoner_lr: float, weight_decay: float, prefix: str = "reasoner."
) -> list[dict[str, Any]]:
    """AdamW parameter groups: the reasoner's blocks at ``reasoner_lr``, everything else at ``lr``.

    Parameters named ``<prefix>...`` (the adapters' ``reasoner``) except ``<prefix>visnet.`` form the
    ``"reasoner"`` groups; the backbone, heads and VisNet the ``"main"`` groups. One-dimensional
    parameters (biases, norm weights) get no weight decay (``..._no_wd`` groups). Frozen parameters
    (``requires_grad=False``) are left out. Every group has a ``"name"``.

    Example:
        >>> from functools import partial
        >>> from visattn import SimCCAdapter, VisibilityMaskedReasoner
        >>> model = SimCCAdapter(nn.Conv2d(3, 8, 3, stride=4, padding=1), 8, 17, (32, 24),
        ...                      reasoner=partial(VisibilityMaskedReasoner, embed_dim=16, depth=1))
        >>> [g["name"] for g in param_groups(model, lr=1e-3, reasoner_lr=1e-4, weight_decay=0.01)]
        ['main', 'main_no_wd', 'reasoner', 'reasoner_no_wd']
    """
    groups: dict[str, list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        reasoner = name.startswith(prefix) and not name.startswith(prefix + "visnet.")
        key = ("reasoner" if reasoner else "main") + ("" if param.ndim > 1 else "_no_wd")
        groups.setdefault(key, []).append(param)
    return [
        {
            "params": params,
            "name": key,
            "lr": reasoner_lr if key.startswith("reasoner") else lr,
            "weight_decay": 0.0 if key.endswith("_no_wd") else weight_decay,
        }
        for key, params in sorted(groups.items())
    ]


def _factor(
    it: int,
    *,
    total: int,
    schedule: str,
    floor: float,
    warmup: int,
    iters_per_epoch: int,
    milestones: tuple[int, ...],
    gamma: float,
) -> float:
    if schedule == "cosine":
        value = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(it / total, 1.0)))
    else:
        value = gamma ** sum(it // iters_per_epoch >= m for m in milestones)
    return value * (min(1.0, (it + 1) / warmup) if warmup else 1.0)


def lr_lambdas(
    groups: Sequence[dict[str, Any]],
    total_iters: int,
    *,
    schedule: str = "cosine",
    warmup_iters: int = 1000,
    min_lr_ratio: float = 0.01,
    iters_per_epoch: int = 1,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
) -> list[Callable[[int], float]]:
    """Per-iteration learning-rate factors of [`param_groups`][visattn.optim.param_groups]' groups, for
    ``LambdaLR``.

    ``"cosine"``: ``floor + (1 - floor) (1 + cos(pi it / total_iters)) / 2`` with ``floor =
    min_lr_ratio`` for the main groups and 0 for the reasoner; ``"step"``: ``gamma ** (number of
    milestones passed)``, milestones in epochs of ``iters_per_epoch``. The reasoner groups are also
    multiplied by a linear warm-up ``min(1, (it + 1) / warmup)``, the warm-up capped at a tenth of the run
    (a 1,000-iteration warm-up in a short run would otherwise keep the reasoner at a fraction of its
    learning rate throughout). The factors are picklable.

    Args:
        groups: the optimizer's parameter groups (their ``"name"`` tells the reasoner ones).
        total_iters: iterations of the whole run.
        schedule: ``"cosine" | "step"``.
        warmup_iters: reasoner warm-up (capped at ``total_iters // 10``).
        min_lr_ratio: cosine floor of the main groups, in [0, 1].
        iters_per_epoch: iterations per epoch (step schedule).
        milestones: epochs at which the step schedule multiplies by ``gamma``.
        gamma: step factor.

    Example:
        >>> groups = [{"name": "main"}, {"name": "reasoner"}]
        >>> main, reasoner = lr_lambdas(groups, 100, warmup_iters=10)
        >>> round(main(0), 3), round(reasoner(0), 3), round(reasoner(9), 3), round(main(100), 3)
        (1.0, 0.1, 0.98, 0.01)
    """
    total = check_positive_int("total_iters", total_iters)
    check_choice("schedule", schedule, SCHEDULES)
    warmup = min(check_nonnegative_int("warmup_iters", warmup_iters), total // 10)
    floor = check_probability("min_lr_ratio", min_lr_ratio)
    common: dict[str, Any] = {
        "total": total,
        "schedule": schedule,
        "iters_per_epoch": check_positive_int("iters_per_epoch", iters_per_epoch),
        "milestones": tuple(milestones),
        "gamma": gamma,
    }
    return [
        partial(_factor, floor=0.0, warmup=warmup, **common)
        if str(group.get("name", "")).startswith("reasoner")
        else partial(_factor, floor=floor, warmup=0, **common)
        for group in groups
    ]
