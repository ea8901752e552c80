from __future__ import annotations

import math
import pickle
from functools import partial

import pytest
import torch
from torch import nn

from visattn import SimCCAdapter, VisibilityMaskedReasoner
from visattn.optim import lr_lambdas, param_groups


def _model() -> SimCCAdapter:
    reasoner = partial(VisibilityMaskedReasoner, embed_dim=16, depth=1, num_heads=2)
    return SimCCAdapter(nn.Conv2d(3, 8, 3, stride=4, padding=1), 8, 5, (32, 24), reasoner=reasoner)


def test_param_groups_split_the_reasoner_blocks_from_visnet_and_the_rest() -> None:
    model = _model()
    model.final_layer.bias.requires_grad_(False)  # frozen parameters are left out
    groups = {g["name"]: g for g in param_groups(model, lr=1e-3, reasoner_lr=1e-4, weight_decay=0.05)}
    names = {id(p): n for n, p in model.named_parameters()}
    for key, group in groups.items():
        for param in group["params"]:
            name = names[id(param)]
            in_blocks = name.startswith("reasoner.") and not name.startswith("reasoner.visnet.")
            assert key.startswith("reasoner") == in_blocks, name
            assert key.endswith("_no_wd") == (param.ndim == 1), name
        assert group["lr"] == (1e-4 if key.startswith("reasoner") else 1e-3)
        assert group["weight_decay"] == (0.0 if key.endswith("_no_wd") else 0.05)
    listed = {id(p) for g in groups.values() for p in g["params"]}
    expected = {id(p) for p in model.parameters() if p.requires_grad}
    assert listed == expected
    assert id(model.final_layer.bias) not in listed
    assert any(n.startswith("reasoner.visnet.") for n in (names[i] for i in listed if i in names))


def _oracle(it: int, total: int, reasoner: bool, *, schedule: str, warmup: int, floor: float,
            per_epoch: int, milestones: tuple[int, ...], gamma: float) -> float:  # fmt: skip
    """The schedule written out: cosine or step, times the reasoner's capped warm-up."""
    if schedule == "cosine":
        low = 0.0 if reasoner else floor
        value = low + (1 - low) * (1 + math.cos(math.pi * min(it, total) / total)) / 2
    else:
        epoch = it // per_epoch
        value = gamma ** len([m for m in milestones if epoch >= m])
    cap = min(warmup, total // 10)
    if reasoner and cap:
        value *= min(1.0, (it + 1) / cap)
    return value


@pytest.mark.parametrize("schedule", ["cosine", "step"])
@pytest.mark.parametrize("warmup", [0, 5, 1000])
def test_lr_lambdas_match_the_written_out_schedule(schedule: str, warmup: int) -> None:
    groups = [{"name": "main"}, {"name": "main_no_wd"}, {"name": "reasoner"}, {"name": "reasoner_no_wd"}]
    kw = {"schedule": schedule, "warmup_iters": warmup, "min_lr_ratio": 0.05, "iters_per_epoch": 10,
          "milestones": (3, 6), "gamma": 0.1}  # fmt: skip
    lambdas = lr_lambdas(groups, 100, **kw)
    for it in range(0, 120, 7):
        for group, fn in zip(groups, lambdas):
            want = _oracle(it, 100, group["name"].startswith("reasoner"), schedule=schedule, warmup=warmup,
                           floor=0.05, per_epoch=10, milestones=(3, 6), gamma=0.1)  # fmt: skip
            assert fn(it) == pytest.approx(want, abs=1e-12), (group["name"], it)
    assert pickle.loads(pickle.dumps(lambdas))[2](3) == lambdas[2](3)  # picklable (checkpoints, DDP spawn)


def test_lr_lambdas_drive_lambdalr_and_reject_bad_arguments() -> None:
    model = _model()
    optimizer = torch.optim.AdamW(param_groups(model, lr=1e-3, reasoner_lr=1e-4, weight_decay=0.0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambdas(optimizer.param_groups, 50))
    rates = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert rates["main"] == pytest.approx(1e-3)
    assert rates["reasoner"] == pytest.approx(1e-4 / 5)  # warm-up capped at 50 // 10 = 5 iterations
    for _ in range(50):
        optimizer.step()
        scheduler.step()
    assert {g["name"]: g["lr"] for g in optimizer.param_groups}["main"] == pytest.approx(1e-3 * 0.01)
    with pytest.raises(ValueError, match="schedule must be one of"):
        lr_lambdas([], 10, schedule="linear")
    with pytest.raises(ValueError, match="total_iters must be a positive int"):
        lr_lambdas([], 0)
    with pytest.raises(ValueError, match=r"min_lr_ratio must be in \[0, 1\]"):
        lr_lambdas([], 10, min_lr_ratio=2.0)
