"""A training step (adapter + reasoner + loss, forward and backward) reads no tensor value on the host.

Validation happens once, where data enters (datasets, codecs, the public call's shapes and dtypes); a
forward pass or a loss never reads a value to validate it (``bool(t)``, ``.item()``), which on CUDA would
be a device synchronisation per step. The meta device has no values at all, so any such read fails
there; on CUDA ``torch.cuda.set_sync_debug_mode("error")`` turns a synchronisation into an error.

Also runs the layer, adapters and losses on every available device (``device`` fixture: CPU, and CUDA
when present) and dtype, against a float64 CPU reference.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from visattn import HeatmapAdapter, SimCCAdapter, VisibilityMaskedReasoner
from visattn.codecs import HeatmapTargets, SimCCTargets
from visattn.losses import VisibilityAwareLoss, VisibilityBCELoss, VisibilityFocalLoss

B, K, H, W = 4, 17, 32, 24
SOURCES = ("predicted", "ground_truth", "none", "mixed")


def _backbone() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8), nn.ReLU())


def _models(device: torch.device | str, dtype: torch.dtype, source: str, mode: str) -> list[nn.Module]:
    factory = partial(VisibilityMaskedReasoner, embed_dim=16, depth=2, mask_source=source, mask_mode=mode)
    simcc = SimCCAdapter(_backbone().to(device, dtype), 8, K, (H, W), reasoner=factory)
    pose = nn.Conv2d(3, K, 3, stride=4, padding=1).to(device, dtype)
    heat = HeatmapAdapter(pose, K, heatmap_size=(H // 4, W // 4), reasoner=factory)
    return [simcc, heat]


def _targets(model: nn.Module, device: torch.device | str, dtype: torch.dtype) -> object:
    if isinstance(model, SimCCAdapter):
        wx, hy = model.head.num_x_bins, model.head.num_y_bins
        x = torch.softmax(torch.randn(B, K, wx), -1)
        y = torch.softmax(torch.randn(B, K, hy), -1)
        return SimCCTargets(x.to(device, dtype), y.to(device, dtype), torch.ones(B, K, device=device))
    hf, wf = model.heatmap_size
    return HeatmapTargets(torch.rand(B, K, hf, wf).to(device, dtype), torch.ones(B, K, device=device))


def _step(model: nn.Module, device: torch.device | str, dtype: torch.dtype, vis_loss: nn.Module) -> None:
    model.train()
    images = torch.randn(B, 3, H, W).to(device, dtype)
    flags = torch.randint(0, 3, (B, K)).to(device)
    out = model(images, flags)
    losses = VisibilityAwareLoss(model.head, vis_loss=vis_loss)(out, _targets(model, device, dtype), flags)
    losses.total.backward()


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize(
    "vis_loss", [VisibilityBCELoss(), VisibilityBCELoss(balanced=True), VisibilityFocalLoss()]
)
def test_training_step_runs_on_the_meta_device(source: str, mode: str, vis_loss: nn.Module) -> None:
    for model in _models("meta", torch.float32, source, mode):
        _step(model, "meta", torch.float32, vis_loss)
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_a_value_read_fails_on_the_meta_device() -> None:
    # the premise of the test above: on meta, reading a value raises
    with pytest.raises((RuntimeError, NotImplementedError)):
        bool(torch.ones(2, device="meta").all())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("source", SOURCES)
def test_training_step_does_not_synchronise_cuda(source: str) -> None:
    models = _models("cuda", torch.float32, source, "soft")
    _step(models[0], "cuda", torch.float32, VisibilityBCELoss())  # warm-up: allocator and kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for model in models:
            _step(model, "cuda", torch.float32, VisibilityBCELoss(balanced=True))
    finally:
        torch.cuda.set_sync_debug_mode("default")


DTYPES = [torch.float32, torch.float64, torch.bfloat16]
# forward of two small adapters after float64: a few ulps of the dtype per layer
FORWARD_TOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 0.15}


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_adapters_and_losses_on_every_device_and_dtype(
    device: torch.device, dtype: torch.dtype
) -> None:
    """The forward (and the loss) on ``device`` / ``dtype`` equals the float64 CPU run of the same weights."""
    reference = _models("cpu", torch.float64, "predicted", "soft")
    tested = _models(device, dtype, "predicted", "soft")
    images = torch.randn(B, 3, H, W, dtype=torch.float64)
    flags = torch.randint(0, 3, (B, K))
    tol = FORWARD_TOL[dtype]
    for ref, test in zip(reference, tested):
        test.load_state_dict(ref.state_dict())  # copies (and casts) the float64 weights
        ref.eval()
        test.eval()
        with torch.no_grad():
            want = ref(images, flags)
            got = test(images.to(device, dtype), flags.to(device))
        assert got.vis_logits.dtype == torch.float32  # VisNet's logits are float32 whatever the dtype
        for g, w in zip(got, want):
            assert g.device.type == device.type
            torch.testing.assert_close(g.double().cpu(), w.double(), atol=tol, rtol=tol)
        targets = _targets(ref, "cpu", torch.float64)
        loss_ref = VisibilityAwareLoss(ref.head)(want, targets, flags).total
        moved = type(targets)(
            *(x.to(device, dtype) if x.is_floating_point() else x.to(device) for x in targets)
        )
        loss = VisibilityAwareLoss(test.head)(got, moved, flags.to(device)).total
        assert loss.dtype == torch.float32  # losses compute in float32
        torch.testing.assert_close(loss.double().cpu(), loss_ref.double(), atol=10 * tol, rtol=10 * tol)
