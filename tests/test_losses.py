"""Losses against loop definitions of the authors' losses, gradients, edge cases and validation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.helpers import assert_close
from visattn.codecs import HeatmapTargets, SimCCTargets
from visattn.heads import HeatmapHead, HeatmapOutput, SimCCHead, SimCCOutput
from visattn.losses import (
    HeatmapMSELoss,
    LossOutput,
    SimCCKLLoss,
    VisibilityAwareLoss,
    VisibilityBCELoss,
    VisibilityCELoss,
    VisibilityFocalLoss,
    heatmap_mse_loss,
    simcc_kl_loss,
    visibility_bce_loss,
    visibility_ce_loss,
    visibility_focal_loss,
)

B, K, WX, HY, HF, WF = 3, 4, 10, 12, 5, 4


# ------------------------------------------------------------------------------------------------
# loop oracles: plain Python floats, following the written definitions


def oracle_kl(x, y, tx, ty, w):
    """Authors' order: per keypoint, per axis, mean over bins, times weight, mean over batch; sum; / K."""
    batch, num = len(w), len(w[0])

    def row_kl(logits, labels):
        m = max(logits)
        lse = m + math.log(sum(math.exp(v - m) for v in logits))
        total = 0.0
        for p, t in zip(logits, labels):
            if t != 0:
                total += t * (math.log(t) - (p - lse))
        return total / len(logits)

    loss = 0.0
    for k in range(num):
        for logits, labels in ((x, tx), (y, ty)):
            loss += sum(row_kl(logits[b][k], labels[b][k]) * w[b][k] for b in range(batch)) / batch
    return loss / num


def oracle_mse(pred, target, w):
    batch, num = len(w), len(w[0])
    hf, wf = len(pred[0][0]), len(pred[0][0][0])
    loss = 0.0
    for k in range(num):
        acc = 0.0
        for b in range(batch):
            for i in range(hf):
                for j in range(wf):
                    acc += (pred[b][k][i][j] * w[b][k] - target[b][k][i][j] * w[b][k]) ** 2
        loss += 0.5 * acc / (batch * hf * wf)
    return loss / num


def oracle_bce(logits, flags):
    total, n = 0.0, 0
    for row_l, row_f in zip(logits.tolist(), flags.tolist()):
        for z, v in zip(row_l, row_f):
            t = 1.0 if v == 2 else 0.0
            p = 1.0 / (1.0 + math.exp(-z))
            total += -(t * math.log(p) + (1 - t) * math.log(1 - p))
            n += 1
    return total / n


def oracle_ce(logits, flags):
    total = 0.0
    rows = logits.tolist()
    for row_l, row_f in zip(rows, flags.tolist()):
        probs = [1.0 / (1.0 + math.exp(-z)) for z in row_l]
        lse = math.log(sum(math.exp(p) for p in probs))
        total += -sum((1.0 if v == 2 else 0.0) * (p - lse) for p, v in zip(probs, row_f))
    return total / len(rows)


class TorchLoopKL(nn.Module):
    """The authors' KLDiscretLoss written with torch ops (differentiable oracle for gradients)."""

    def forward(self, x, y, tx, ty, w):
        loss = x.new_zeros(())
        kl = nn.KLDivLoss(reduction="none")
        for k in range(x.shape[1]):
            for p, t in ((x[:, k], tx[:, k]), (y[:, k], ty[:, k])):
                loss = loss + kl(torch.log_softmax(p, dim=-1), t).mean(dim=-1).mul(w[:, k]).mean()
        return loss / x.shape[1]


class TorchLoopMSE(nn.Module):
    """SimpleBaseline's JointsMSELoss(use_target_weight=True) with a loop over keypoints."""

    def forward(self, pred, target, w):
        loss = pred.new_zeros(())
        mse = nn.MSELoss()
        for k in range(pred.shape[1]):
            wk = w[:, k].reshape(-1, 1, 1)
            loss = loss + 0.5 * mse(pred[:, k] * wk, target[:, k] * wk)
        return loss / pred.shape[1]


def simcc_inputs(dtype=torch.float32):
    x = (torch.randn(B, K, WX) * 2).to(dtype).requires_grad_()
    y = (torch.randn(B, K, HY) * 2).to(dtype).requires_grad_()
    tx = torch.softmax(torch.randn(B, K, WX, dtype=dtype) * 3, dim=-1)
    ty = torch.softmax(torch.randn(B, K, HY, dtype=dtype) * 3, dim=-1)
    tx[0, 0, :3] = 0.0  # exact zeros exercise 0 log 0 = 0
    ty[1, 2] = 0.0
    w = torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0], [0.5, 1.0, 1.0, 2.0]], dtype=dtype)
    return x, y, tx, ty, w


# ------------------------------------------------------------------------------------------------
# SimCC KL


def test_kl_matches_loop_definition_and_authors_loop():
    x, y, tx, ty, w = simcc_inputs()
    loss = simcc_kl_loss(x, y, tx, ty, w)
    expected = oracle_kl(x.tolist(), y.tolist(), tx.tolist(), ty.tolist(), w.tolist())
    assert loss.dtype == torch.float32
    assert loss.dim() == 0
    assert abs(loss.item() - expected) < 1e-5
    assert_close(loss, TorchLoopKL()(x, y, tx, ty, w))


def tiny_float64_inputs():
    """Logits (with grad), soft labels and weights small enough for gradcheck: B = K = 2, 5 / 4 bins."""
    x64 = torch.randn(2, 2, 5, dtype=torch.float64, requires_grad=True)
    y64 = torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True)
    tx64 = torch.softmax(torch.randn(2, 2, 5, dtype=torch.float64), dim=-1)
    ty64 = torch.softmax(torch.randn(2, 2, 4, dtype=torch.float64), dim=-1)
    w64 = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    return x64, y64, tx64, ty64, w64


def test_kl_gradients_match_loop_and_gradcheck():
    x, y, tx, ty, w = simcc_inputs()
    gx, gy = torch.autograd.grad(simcc_kl_loss(x, y, tx, ty, w), (x, y))
    ex, ey = torch.autograd.grad(TorchLoopKL()(x, y, tx, ty, w), (x, y))
    assert_close(gx, ex)
    assert_close(gy, ey)
    # tiny float64 inputs; the loss computes in float32 by design, hence the loose tolerance
    x64, y64, tx64, ty64, w64 = tiny_float64_inputs()
    assert torch.autograd.gradcheck(
        lambda a, b: simcc_kl_loss(a, b, tx64, ty64, w64).double(), (x64, y64), eps=1e-3, atol=1e-3
    )


def test_kl_module_equals_function():
    x, y, tx, ty, w = simcc_inputs()
    assert torch.equal(SimCCKLLoss()((x, y), (tx, ty), w), simcc_kl_loss(x, y, tx, ty, w))


def test_kl_perfect_prediction_is_zero():
    tx = torch.softmax(torch.randn(2, 3, 8), dim=-1)
    ty = torch.softmax(torch.randn(2, 3, 6), dim=-1)
    loss = simcc_kl_loss(tx.log(), ty.log(), tx, ty, torch.ones(2, 3))
    assert abs(loss.item()) < 1e-6


# ------------------------------------------------------------------------------------------------
# heatmap MSE


def test_mse_matches_loop_definition():
    pred = torch.randn(B, K, HF, WF, requires_grad=True)
    target = torch.rand(B, K, HF, WF)
    w = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.5, 2.0]])
    loss = heatmap_mse_loss(pred, target, w)
    expected = oracle_mse(pred.detach().tolist(), target.tolist(), w.tolist())
    assert abs(loss.item() - expected) < 1e-5
    assert_close(loss, TorchLoopMSE()(pred, target, w))
    (g,) = torch.autograd.grad(loss, pred)
    (e,) = torch.autograd.grad(TorchLoopMSE()(pred, target, w), pred)
    assert_close(g, e)
    assert torch.equal(HeatmapMSELoss()(pred, target, w), loss)


def test_mse_gradcheck():
    pred = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 2, 3, 3, dtype=torch.float64)
    w = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda p: heatmap_mse_loss(p, target, w).double(), (pred,), eps=1e-3, atol=1e-3
    )


# ------------------------------------------------------------------------------------------------
# visibility


def test_bce_matches_loop_definition():
    logits = torch.randn(B, 17, requires_grad=True)
    flags = torch.randint(0, 3, (B, 17))
    loss = visibility_bce_loss(logits, flags)
    assert abs(loss.item() - oracle_bce(logits.detach(), flags)) < 1e-5
    assert torch.equal(VisibilityBCELoss()(logits, flags), loss)
    with pytest.raises(TypeError, match="flags must hold COCO flags"):  # one type at the boundary
        visibility_bce_loss(logits, flags == 2)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def _bce_one(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_balanced_bce_gives_each_class_half_the_weight():
    logits = torch.randn(B, 17, requires_grad=True)
    flags = torch.randint(0, 3, (B, 17))
    loss = visibility_bce_loss(logits, flags, balanced=True)
    values = logits.detach()
    vis = [_bce_one(float(values[b, k]), 1.0) for b in range(B) for k in range(17) if flags[b, k] == 2]
    occ = [_bce_one(float(values[b, k]), 0.0) for b in range(B) for k in range(17) if flags[b, k] != 2]
    assert abs(loss.item() - (0.5 * sum(vis) / len(vis) + 0.5 * sum(occ) / len(occ))) < 1e-5
    assert torch.equal(VisibilityBCELoss(balanced=True)(logits, flags), loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # one class only: the plain mean over that class
    all_visible = torch.full((B, 17), 2)
    assert (
        abs(
            visibility_bce_loss(logits, all_visible, balanced=True).item()
            - oracle_bce(logits.detach(), all_visible)
        )
        < 1e-5
    )


def test_focal_matches_loop_definition():
    logits = torch.randn(B, 17, requires_grad=True)
    flags = torch.randint(0, 3, (B, 17))
    for gamma, alpha in ((2.0, 0.25), (0.5, None), (0.0, 0.7)):
        loss = visibility_focal_loss(logits, flags, gamma=gamma, alpha=alpha)
        total = 0.0
        values = logits.detach()
        for b in range(B):
            for k in range(17):
                t = 1.0 if flags[b, k] == 2 else 0.0
                p = 1 / (1 + math.exp(-float(values[b, k])))
                p_t = p if t else 1 - p
                a_t = 1.0 if alpha is None else (alpha if t else 1 - alpha)
                total += a_t * (1 - p_t) ** gamma * _bce_one(float(values[b, k]), t)
        assert abs(loss.item() - total / (B * 17)) < 1e-5
        assert torch.equal(VisibilityFocalLoss(gamma, alpha)(logits, flags), loss)
    assert torch.equal(
        visibility_focal_loss(logits, flags, gamma=0.0, alpha=None), visibility_bce_loss(logits, flags)
    )
    with pytest.raises(ValueError, match="gamma"):
        VisibilityFocalLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        VisibilityFocalLoss(alpha=1.5)
    with pytest.raises(TypeError, match="balanced"):
        VisibilityBCELoss(balanced=1)  # type: ignore[arg-type]


def test_ce_matches_authors_definition():
    logits = torch.randn(B, 17, requires_grad=True)
    flags = torch.randint(0, 3, (B, 17))
    loss = visibility_ce_loss(logits, flags)
    assert abs(loss.item() - oracle_ce(logits.detach(), flags)) < 1e-5
    assert torch.equal(VisibilityCELoss()(logits, flags), loss)


# ------------------------------------------------------------------------------------------------
# edge cases shared by all losses


def all_losses(batch, k=K, weights=None, requires_grad=True):
    x = torch.randn(batch, k, WX, requires_grad=requires_grad)
    y = torch.randn(batch, k, HY, requires_grad=requires_grad)
    hm = torch.randn(batch, k, HF, WF, requires_grad=requires_grad)
    vis = torch.randn(batch, k, requires_grad=requires_grad)
    w = torch.ones(batch, k) if weights is None else weights
    flags = torch.randint(0, 3, (batch, k))
    return (
        (
            simcc_kl_loss(x, y, torch.rand(batch, k, WX), torch.rand(batch, k, HY), w),
            heatmap_mse_loss(hm, torch.rand(batch, k, HF, WF), w),
            visibility_bce_loss(vis, flags),
            visibility_ce_loss(vis, flags),
            visibility_bce_loss(vis, flags, balanced=True),
            visibility_focal_loss(vis, flags),
        ),
        (x, y, hm, vis),
    )


def test_empty_batch_gives_zero_with_graph():
    losses, inputs = all_losses(0)
    for loss in losses:
        assert loss.item() == 0.0
        assert loss.requires_grad
        assert loss.dtype == torch.float32
        grads = torch.autograd.grad(loss, [t for t in inputs if t.requires_grad], allow_unused=True)
        assert all(g is None or torch.isfinite(g).all() for g in grads)


def test_no_labelled_keypoint_gives_zero_that_backpropagates():
    losses, (x, y, hm, _) = all_losses(2, weights=torch.zeros(2, K))
    for loss, inputs in ((losses[0], (x, y)), (losses[1], (hm,))):
        assert loss.item() == 0.0
        grads = torch.autograd.grad(loss, inputs)
        assert all(torch.isfinite(g).all() and g.abs().sum() == 0 for g in grads)


def test_single_keypoint():
    losses, _ = all_losses(2, k=1)
    assert all(torch.isfinite(loss) for loss in losses)


def test_bf16_autocast_computes_in_float32():
    x, y, tx, ty, w = simcc_inputs()
    pred = torch.randn(B, K, HF, WF)
    target = torch.rand(B, K, HF, WF)
    logits = torch.randn(B, K)
    flags = torch.randint(0, 3, (B, K))
    xb, yb, pb = x.detach().bfloat16(), y.detach().bfloat16(), pred.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kl = simcc_kl_loss(xb, yb, tx.bfloat16(), ty.bfloat16(), w)
        mse = heatmap_mse_loss(pb, target.bfloat16(), w)
        bce = visibility_bce_loss(logits.bfloat16(), flags)
    assert kl.dtype == mse.dtype == bce.dtype == torch.float32
    # same math in float32 on the bf16-rounded values
    assert_close(kl, simcc_kl_loss(xb.float(), yb.float(), tx.bfloat16().float(), ty.bfloat16().float(), w))
    assert_close(mse, heatmap_mse_loss(pb.float(), target.bfloat16().float(), w))
    assert_close(bce, visibility_bce_loss(logits.bfloat16().float(), flags))


# ------------------------------------------------------------------------------------------------
# VisibilityAwareLoss


class _Head:
    """A head stand-in that records what the loss hands it: the protocol is just ``loss``."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, object, object]] = []

    def loss(self, output, targets, weights=None):
        self.calls.append((output, targets, weights))
        return simcc_kl_loss(output.x_logits, output.y_logits, targets.x_labels, targets.y_labels,
                             targets.weights if weights is None else weights)  # fmt: skip


def _simcc_case():
    x, y, tx, ty, w = simcc_inputs()
    logits = torch.randn(B, K, requires_grad=True)
    return SimCCOutput(x, y, logits, None), SimCCTargets(tx, ty, w)


def test_visibility_aware_all_and_visible():
    out, targets = _simcc_case()
    x, y, tx, ty, w = out.x_logits, out.y_logits, targets.x_labels, targets.y_labels, targets.weights
    flags = torch.tensor([[2, 1, 0, 2], [2, 2, 2, 1], [1, 2, 0, 2]])
    head = _Head()
    losses = VisibilityAwareLoss(head, vis_weight=0.5)(out, targets, flags)
    assert isinstance(losses, LossOutput)
    assert head.calls[0][0] is out
    assert head.calls[0][1] is targets
    assert head.calls[0][2] is None
    assert torch.equal(losses.pose, simcc_kl_loss(x, y, tx, ty, w))
    assert torch.equal(losses.vis, visibility_bce_loss(out.vis_logits, flags))
    assert_close(losses.total, losses.pose + 0.5 * losses.vis)

    plain = out._replace(vis_logits=None)
    visible_only = VisibilityAwareLoss(head, pose_keypoints="visible")(plain, targets, flags)
    masked = w * (flags == 2).float()
    assert torch.equal(head.calls[-1][2], masked)
    assert torch.equal(visible_only.pose, simcc_kl_loss(x, y, tx, ty, masked))
    assert visible_only.vis.item() == 0.0
    assert visible_only.vis.grad_fn is not None
    visible_only.total.backward()
    assert torch.isfinite(x.grad).all()


def test_visibility_aware_with_a_real_head_equals_the_loss_functions():
    head = SimCCHead(8, (6, 5), sigma=1.5)
    keypoints = torch.rand(B, K, 2) * torch.tensor([4.0, 5.0])
    flags = torch.randint(0, 3, (B, K))
    targets = head.encode(keypoints, flags)
    out = SimCCOutput(torch.randn(B, K, 10), torch.randn(B, K, 12), torch.randn(B, K), None)
    losses = VisibilityAwareLoss(head)(out, targets, flags)
    pose = simcc_kl_loss(out.x_logits, out.y_logits, targets.x_labels, targets.y_labels, targets.weights)
    assert torch.equal(losses.pose, pose)


def test_visibility_aware_with_authors_ce_and_heatmaps():
    head = HeatmapHead((HF, WF))
    pred = torch.randn(B, K, HF, WF, requires_grad=True)
    flags = torch.randint(0, 3, (B, K))
    targets = HeatmapTargets(torch.rand(B, K, HF, WF), torch.ones(B, K))
    logits = torch.randn(B, K)
    crit = VisibilityAwareLoss(head, vis_loss=VisibilityCELoss())
    out = crit(HeatmapOutput(pred, logits, None), targets, flags)
    assert torch.equal(out.pose, heatmap_mse_loss(pred, targets.heatmaps, targets.weights))
    assert torch.equal(out.vis, visibility_ce_loss(logits, flags))
    assert "pose_keypoints='all'" in repr(crit)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((_Head(),), {"pose_keypoints": "occluded"}, ValueError, "pose_keypoints"),
        ((_Head(),), {"vis_weight": -1.0}, ValueError, "vis_weight"),
        ((_Head(),), {"vis_weight": "1"}, TypeError, "vis_weight"),
        ((heatmap_mse_loss,), {}, TypeError, "head must be the model's head"),
        ((SimCCKLLoss(),), {}, TypeError, "head must be the model's head"),
        ((_Head(),), {"vis_loss": visibility_bce_loss}, TypeError, "vis_loss"),
    ],
)
def test_visibility_aware_rejects_bad_arguments(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        VisibilityAwareLoss(*args, **kwargs)


def test_visibility_aware_rejects_bad_flags_without_reading_their_values():
    crit = VisibilityAwareLoss(HeatmapHead((3, 3)))
    out = HeatmapOutput(torch.zeros(1, 2, 3, 3), None, None)
    targets = HeatmapTargets(torch.zeros(1, 2, 3, 3), torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"flags must be \(B, K\) with B=1, K=2"):
        crit(out, targets, torch.tensor([[2, 2, 2]]))
    with pytest.raises(TypeError, match="flags must hold COCO flags"):
        crit(out, targets, torch.tensor([[True, False]]))
    with pytest.raises(TypeError, match="output must be the model's output NamedTuple"):
        crit((torch.zeros(1, 2, 3, 3),), targets, torch.tensor([[2, 2]]))
    # values are checked where flags enter (dataset, codec): a loss never reads them (no device sync)
    assert crit(out, targets, torch.tensor([[3, 2]])).total.item() == 0.0


# ------------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (
            (
                torch.zeros(2, 3, 8),
                torch.zeros(2, 3, 6),
                torch.zeros(2, 3, 9),
                torch.zeros(2, 3, 6),
                torch.ones(2, 3),
            ),
            "x_labels",
        ),
        (
            (
                torch.zeros(2, 3, 8),
                torch.zeros(2, 4, 6),
                torch.zeros(2, 3, 8),
                torch.zeros(2, 3, 6),
                torch.ones(2, 3),
            ),
            "y_logits",
        ),
        (
            (
                torch.zeros(2, 3, 8),
                torch.zeros(2, 3, 6),
                torch.zeros(2, 3, 8),
                torch.zeros(2, 3, 5),
                torch.ones(2, 3),
            ),
            "y_labels",
        ),
        (
            (
                torch.zeros(2, 3, 8),
                torch.zeros(2, 3, 6),
                torch.zeros(2, 3, 8),
                torch.zeros(2, 3, 6),
                torch.ones(2, 4),
            ),
            "weights",
        ),
        (
            (torch.zeros(3, 8), torch.zeros(3, 6), torch.zeros(3, 8), torch.zeros(3, 6), torch.ones(3)),
            "x_logits",
        ),
    ],
)
def test_kl_rejects_mismatched_shapes(args, match):
    with pytest.raises(ValueError, match=match):
        simcc_kl_loss(*args)


def test_other_losses_reject_bad_inputs():
    with pytest.raises(ValueError, match="target"):
        heatmap_mse_loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 4), torch.ones(1, 2))
    with pytest.raises(ValueError, match="weights"):
        heatmap_mse_loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3), torch.ones(2, 2))
    with pytest.raises(TypeError, match="pred"):
        heatmap_mse_loss(torch.zeros(1, 2, 3, 3, dtype=torch.long), torch.zeros(1, 2, 3, 3), torch.ones(1, 2))
    with pytest.raises(TypeError, match="flags"):
        visibility_bce_loss(torch.zeros(1, 2), torch.tensor([[0.0, 1.0]], dtype=torch.complex64))
    with pytest.raises(ValueError, match="flags"):
        visibility_ce_loss(torch.zeros(1, 2), torch.tensor([[0, 1, 2]]))
    with pytest.raises(TypeError, match="pred"):
        SimCCKLLoss()(torch.zeros(1, 2, 3), (torch.zeros(1, 2, 3), torch.zeros(1, 2, 3)), torch.ones(1, 2))


def test_kl_label_gradient_path_and_inputs_untouched():
    x, y, tx, ty, w = simcc_inputs()
    tx_copy, ty_copy = tx.clone(), ty.clone()
    fused = simcc_kl_loss(x, y, tx, ty, w)
    assert torch.equal(tx, tx_copy)
    assert torch.equal(ty, ty_copy)
    # strictly positive labels: d(t log t)/dt is infinite at t = 0
    txg = torch.softmax(torch.randn(B, K, WX), dim=-1).requires_grad_()
    tyg = torch.softmax(torch.randn(B, K, HY), dim=-1).requires_grad_()
    fused = simcc_kl_loss(x, y, txg.detach(), tyg.detach(), w)
    composite = simcc_kl_loss(x, y, txg, tyg, w)
    assert_close(composite, fused)
    expected = torch.autograd.grad(TorchLoopKL()(x, y, txg, tyg, w), (x, txg))
    got = torch.autograd.grad(composite, (x, txg))
    assert_close(got[0], expected[0])
    assert_close(got[1], expected[1])


def test_mse_target_gradient():
    pred = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.rand(2, 3, 4, 4, requires_grad=True)
    w = torch.rand(2, 3)
    got = torch.autograd.grad(heatmap_mse_loss(pred, target, w), (pred, target))
    expected = torch.autograd.grad(TorchLoopMSE()(pred, target, w), (pred, target))
    assert_close(got[0], expected[0])
    assert_close(got[1], expected[1])


# ------------------------------------------------------------------------------------------------
# RTMPose's KL settings and the reductions relative to MMPose


def oracle_kl_rtm(x, y, tx, ty, w, beta, label_beta):
    """Loop form of the tempered loss: log_softmax(beta * p), targets softmax(label_beta * t) or t.

    Returns ``(visattn, mmpose)``: visattn's mean over batch and keypoints, and MMPose's reduction (sum
    over batch and keypoints of the bin-averaged KL times the weight, x plus y, divided by K).
    """
    batch, num = len(w), len(w[0])

    def softmax(values, scale):
        m = max(v * scale for v in values)
        e = [math.exp(v * scale - m) for v in values]
        s = sum(e)
        return [v / s for v in e]

    def row_kl(logits, labels):
        q = softmax(logits, beta)
        t = labels if label_beta is None else softmax(labels, label_beta)
        return sum(ti * (math.log(ti) - math.log(qi)) for ti, qi in zip(t, q) if ti != 0) / len(logits)

    total = 0.0
    for b in range(batch):
        for k in range(num):
            total += w[b][k] * (row_kl(x[b][k], tx[b][k]) + row_kl(y[b][k], ty[b][k]))
    return total / (batch * num), total / num


@pytest.mark.parametrize(
    ("kwargs", "label_beta"),
    [
        ({}, None),
        ({"beta": 10.0}, None),
        ({"beta": 10.0, "label_softmax": True}, 10.0),  # RTMPose
        ({"beta": 2.0, "label_softmax": True}, 2.0),  # label_beta follows beta
        ({"beta": 2.0, "label_softmax": True, "label_beta": 10.0}, 10.0),  # MMPose >= 1.3 default
    ],
)
def test_kl_temperature_and_label_softmax_match_loop(kwargs, label_beta):
    x, y, tx, ty, w = simcc_inputs()
    beta = kwargs.get("beta", 1.0)
    ours, mmpose = oracle_kl_rtm(
        x.tolist(), y.tolist(), tx.tolist(), ty.tolist(), w.tolist(), beta, label_beta
    )
    loss = simcc_kl_loss(x, y, tx, ty, w, **kwargs)
    assert loss.item() == pytest.approx(ours, rel=1e-5, abs=1e-7)
    # the documented factor: MMPose's KLDiscretLoss = B * visattn
    assert B * loss.item() == pytest.approx(mmpose, rel=1e-5, abs=1e-7)
    assert torch.equal(SimCCKLLoss(**kwargs)((x, y), (tx, ty), w), loss)
    gx, gy = torch.autograd.grad(loss, (x, y))
    assert torch.isfinite(gx).all()
    assert torch.isfinite(gy).all()


def test_kl_defaults_reproduce_the_untempered_loss_bit_for_bit():
    x, y, tx, ty, w = simcc_inputs()
    plain = simcc_kl_loss(x, y, tx, ty, w)
    assert torch.equal(simcc_kl_loss(x, y, tx, ty, w, beta=1.0, label_softmax=False), plain)
    assert torch.equal(simcc_kl_loss(x, y, tx, ty, w, beta=1), plain)
    assert abs(plain.item() - oracle_kl(x.tolist(), y.tolist(), tx.tolist(), ty.tolist(), w.tolist())) < 1e-5


def test_kl_temperature_changes_the_loss_and_has_correct_gradients():
    x, y, tx, ty, w = simcc_inputs()
    assert simcc_kl_loss(x, y, tx, ty, w, beta=10.0).item() != pytest.approx(
        simcc_kl_loss(x, y, tx, ty, w).item()
    )
    x64, y64, tx64, ty64, w64 = tiny_float64_inputs()
    assert torch.autograd.gradcheck(
        lambda a, b: simcc_kl_loss(a, b, tx64, ty64, w64, beta=3.0, label_softmax=True).double(),
        (x64, y64),
        eps=1e-3,
        atol=1e-3,
    )


def test_kl_module_settings_and_repr():
    assert repr(SimCCKLLoss()) == "SimCCKLLoss()"
    rtm = SimCCKLLoss(beta=10.0, label_softmax=True)
    assert (rtm.beta, rtm.label_softmax, rtm.label_beta) == (10.0, True, 10.0)
    assert repr(rtm) == "SimCCKLLoss(beta=10.0, label_softmax=True, label_beta=10.0)"
    assert SimCCKLLoss(beta=10.0, label_softmax=True, label_beta=5.0).label_beta == 5.0
    assert SimCCKLLoss(beta=2.0).label_beta is None


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"beta": 0.0}, ValueError, "beta must be a finite number > 0"),
        ({"beta": "10"}, TypeError, "beta must be a positive number"),
        ({"beta": True}, TypeError, "beta must be a positive number"),
        ({"label_softmax": 1}, TypeError, "label_softmax must be a bool"),
        ({"label_beta": 10.0}, ValueError, "label_beta is only used with label_softmax=True"),
        ({"label_softmax": True, "label_beta": -1.0}, ValueError, "label_beta must be a finite number > 0"),
    ],
)
def test_kl_rejects_bad_settings(kwargs, exc, match):
    x, y, tx, ty, w = simcc_inputs()
    with pytest.raises(exc, match=match):
        simcc_kl_loss(x, y, tx, ty, w, **kwargs)
    with pytest.raises(exc, match=match):
        SimCCKLLoss(**kwargs)


def test_mse_is_half_of_mmpose_keypoint_mse_for_binary_weights():
    pred = torch.randn(B, K, HF, WF)
    target = torch.rand(B, K, HF, WF)
    w = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0]])
    # MMPose KeypointMSELoss(use_target_weight=True): mean over B, K, Hf, Wf of w * (pred - target)^2
    total = 0.0
    for b in range(B):
        for k in range(K):
            for i in range(HF):
                for j in range(WF):
                    total += float(w[b, k]) * float(pred[b, k, i, j] - target[b, k, i, j]) ** 2
    mmpose = total / (B * K * HF * WF)
    assert 2 * heatmap_mse_loss(pred, target, w).item() == pytest.approx(mmpose, rel=1e-5)
