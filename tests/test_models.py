from __future__ import annotations

from functools import partial

import pytest
import torch

from visattn import HeatmapAdapter, SimCCAdapter, VisibilityMaskedReasoner
from visattn.heads import HeatmapHead, SimCCHead
from visattn.models import create_model, list_models

SMALL = {"embed_dim": 16, "depth": 1, "num_heads": 2}


def test_list_models_names_the_paper_models() -> None:
    assert set(list_models()) == {
        "tiny",
        "resnet18",
        "resnet50",
        "resnet101",
        "resnet152",
        "hrnet_w32",
        "hrnet_w48",
    }


@pytest.mark.parametrize(
    ("name", "channels", "kernel"),
    [("tiny", 64, 1), ("resnet18", 256, 1), ("resnet50", 256, 1), ("hrnet_w32", 32, 7)],
)
def test_create_model_builds_stride_4_models_of_both_heads(name: str, channels: int, kernel: int) -> None:
    size = (64, 48) if name == "tiny" else (64, 32)
    simcc = create_model(name, input_size=size, visattn=SMALL).eval()
    assert isinstance(simcc, SimCCAdapter)
    assert isinstance(simcc.head, SimCCHead)
    maps = (size[0] // 4, size[1] // 4)
    assert (simcc.in_channels, simcc.final_layer.kernel_size) == (channels, (kernel, kernel))
    assert simcc.heatmap_size == maps
    with torch.no_grad():
        out = simcc(torch.randn(1, 3, *size))
    assert out.x_logits.shape == (1, 17, 2 * size[1])
    assert out.vis_logits is not None
    if name == "hrnet_w32":  # the stride-4 branch, picked deliberately (timm returns a list)
        assert simcc.feature_index == 0
    heat = create_model(name, input_size=size, head="heatmap", visattn=False, num_keypoints=14).eval()
    assert isinstance(heat, HeatmapAdapter)
    assert isinstance(heat.head, HeatmapHead)
    assert heat.reasoner is None
    with torch.no_grad():
        assert heat(torch.randn(1, 3, *size)).heatmaps.shape == (1, 14, *maps)


def test_visattn_argument_forms() -> None:
    assert create_model("tiny", input_size=(32, 24), visattn=False).reasoner is None
    assert create_model("tiny", input_size=(32, 24), visattn=None).reasoner is None
    default = create_model("tiny", input_size=(32, 24))
    assert default.reasoner is not None
    assert default.reasoner.embed_dim == 512  # VisibilityMaskedReasoner's default
    from_dict = create_model("tiny", input_size=(32, 24), visattn={**SMALL, "mask_source": "ground_truth"})
    assert from_dict.reasoner.mask_source == "ground_truth"
    factory = create_model("tiny", input_size=(32, 24), visattn=partial(VisibilityMaskedReasoner, **SMALL))
    assert factory.reasoner.embed_dim == 16
    assert create_model("tiny", input_size=(32, 24), sigma=3.0).head.codec.sigma == (3.0, 3.0)
    heat = create_model("tiny", input_size=(32, 24), head="heatmap", refinement="dark", visattn=False)
    assert heat.head.codec.refinement == "dark"


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"name": "resnet34"}, ValueError, "name must be one of"),
        ({"name": "tiny", "head": "regression"}, ValueError, "head must be one of"),
        ({"name": "tiny", "input_size": (30, 24)}, ValueError, "multiples of 4"),
        ({"name": "resnet18", "input_size": (64, 48)}, ValueError, "'resnet18' must be multiples of 32"),
        ({"name": "tiny", "visattn": 3}, TypeError, "visattn must be True, False"),
        ({"name": "tiny", "pretrained_backbone": "weights.pth"}, ValueError, "no ImageNet weights"),
        ({"name": "hrnet_w32", "norm": "group"}, ValueError, "norm must be 'batch'"),
        ({"name": "tiny", "num_keypoints": 0}, ValueError, "num_keypoints must be a positive int"),
    ],
)
def test_create_model_errors(kwargs: dict, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        create_model(**kwargs)


def test_pretrained_backbone_is_loaded_from_a_local_file(tmp_path) -> None:
    import torchvision

    reference = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("resnet18", input_size=(64, 32), visattn=False, pretrained_backbone=path)
    assert torch.equal(model.backbone[0][0].weight, reference.conv1.weight)
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="does not fit the trunk"):
        create_model("resnet18", input_size=(64, 32), pretrained_backbone=path)
