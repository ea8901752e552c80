"""Pins the public API: names that outside code calls must not disappear or move silently."""

from __future__ import annotations

import importlib
import inspect

import pytest

import visattn

TOP_LEVEL = {
    "COCO_KEYPOINTS",
    "CROWDPOSE_KEYPOINTS",
    "HeatmapAdapter",
    "HeatmapCodec",
    "HeatmapHead",
    "HeatmapMSELoss",
    "HeatmapOutput",
    "HeatmapTargets",
    "KeypointAttention",
    "KeypointInfo",
    "LossOutput",
    "PoseHead",
    "Prediction",
    "ReasonerBlock",
    "ReasonerOutput",
    "SimCCAdapter",
    "SimCCCodec",
    "SimCCHead",
    "SimCCKLLoss",
    "SimCCOutput",
    "SimCCTargets",
    "VisNet",
    "VisibilityAwareLoss",
    "VisibilityBCELoss",
    "VisibilityCELoss",
    "VisibilityMaskedReasoner",
    "__version__",
    "compat",
    "flags_to_visible",
    "from_official_checkpoint",
    "get_keypoint_info",
    "list_keypoint_sets",
    "load_keypoint_info",
    "predict_crops",
    "predicted_visible",
    "set_fused_attn",
    "to_official_checkpoint",
    "use_fused_attn",
    "visibility_mask",
}

# Names promised in the issues that outside checks call, by module.
CONTRACT = {
    "visattn": ["VisNet", "VisibilityMaskedReasoner", "SimCCAdapter", "HeatmapAdapter", "SimCCHead",
                "VisibilityAwareLoss", "set_fused_attn"],
    "visattn.compat": ["from_official_checkpoint"],
    "visattn.metrics": ["coco_keypoint_ap", "PoseEvaluator", "crowdpose_ap", "pck", "visibility_metrics"],
    "visattn.data": ["make_synthetic_coco", "TopDownCocoDataset", "occlude_batch", "RandomOcclusion"],
    "visattn.export": ["export_onnx", "export_program"],
    "visattn.codecs": ["SimCCCodec", "HeatmapCodec", "simcc_decode", "simcc_flip_back", "heatmap_flip_back"],
    "visattn.losses": ["simcc_kl_loss", "heatmap_mse_loss", "visibility_bce_loss"],
    "visattn.heads": ["PoseHead", "SimCCHead", "HeatmapHead"],
    "visattn.inference": ["predict_crops", "evaluate", "Prediction"],
    "visattn.models": ["create_model", "list_models"],
}  # fmt: skip

MODULES = [
    "visattn",
    "visattn.adapters",
    "visattn.attention",
    "visattn.checkpoint",
    "visattn.cli",
    "visattn.codecs",
    "visattn.compat",
    "visattn.data",
    "visattn.export",
    "visattn.heads",
    "visattn.inference",
    "visattn.keypoints",
    "visattn.losses",
    "visattn.metrics",
    "visattn.models",
    "visattn.optim",
    "visattn.reasoner",
    "visattn.visibility",
    "visattn.visnet",
    "visattn.viz",
]


def test_top_level_all_is_pinned() -> None:
    assert set(visattn.__all__) == TOP_LEVEL
    assert len(visattn.__all__) == len(set(visattn.__all__))


@pytest.mark.parametrize(("module", "names"), sorted(CONTRACT.items()))
def test_contract_names_exist(module: str, names: list[str]) -> None:
    mod = importlib.import_module(module)
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing, f"{module} lacks {missing}"


@pytest.mark.parametrize("module", MODULES)
def test_all_is_explicit_and_resolvable(module: str) -> None:
    mod = importlib.import_module(module)
    assert isinstance(mod.__all__, (list, tuple)), f"{module} has no explicit __all__"
    unresolved = [n for n in mod.__all__ if not hasattr(mod, n)]
    assert not unresolved, f"{module}.__all__ names {unresolved} that do not exist"


@pytest.mark.parametrize("module", MODULES)
def test_public_callables_are_documented(module: str) -> None:
    mod = importlib.import_module(module)
    undocumented = [
        n
        for n in mod.__all__
        if (inspect.isclass(getattr(mod, n)) or inspect.isfunction(getattr(mod, n)))
        and not inspect.getdoc(getattr(mod, n))
    ]
    assert not undocumented, f"{module}: {undocumented} have no docstring"


def test_fused_attn_switch_is_read_at_construction() -> None:
    previous = visattn.use_fused_attn()
    try:
        visattn.set_fused_attn(False)
        reference = visattn.KeypointAttention(8, 2)
        visattn.set_fused_attn(True)
        fused = visattn.KeypointAttention(8, 2)
    finally:
        visattn.set_fused_attn(previous)
    assert reference.fused_attn is False
    assert fused.fused_attn is True
    with pytest.raises(TypeError, match="enabled"):
        visattn.set_fused_attn(1)  # type: ignore[arg-type]
