"""Prediction through the head (flip test included) and the batch-to-evaluator glue."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from visattn import HeatmapAdapter, SimCCAdapter, VisibilityMaskedReasoner, get_keypoint_info
from visattn.codecs import heatmap_flip_back, simcc_flip_back
from visattn.data import TopDownCocoDataset, make_synthetic_coco
from visattn.inference import Prediction, average_outputs, evaluate, predict_crops, unwrap_model
from visattn.metrics import PoseEvaluator

FLIP = get_keypoint_info("coco").flip_index
REASONER = partial(VisibilityMaskedReasoner, embed_dim=16, depth=1, num_heads=2)


def _models() -> list[nn.Module]:
    simcc = SimCCAdapter(nn.Conv2d(3, 8, 3, stride=4, padding=1), 8, 17, (32, 24), reasoner=REASONER)
    heat = HeatmapAdapter(
        nn.Conv2d(3, 17, 3, stride=4, padding=1), 17, heatmap_size=(8, 6), reasoner=REASONER
    )
    return [simcc.eval(), heat.eval()]


def test_predict_crops_decodes_through_the_head() -> None:
    images = torch.randn(3, 3, 32, 24)
    for model in _models():
        pred = predict_crops(model, images)
        with torch.no_grad():
            out = model(images)
        keypoints, scores = model.head.decode(out)
        assert isinstance(pred, Prediction)
        assert torch.equal(pred.keypoints, keypoints)
        assert torch.equal(pred.scores, scores)
        assert torch.equal(pred.vis_logits, out.vis_logits)
        assert torch.equal(pred.vis_probs, torch.sigmoid(out.vis_logits))


def test_flip_test_averages_with_the_flipped_back_mirror() -> None:
    images = torch.randn(2, 3, 32, 24)
    for model in _models():
        pred = predict_crops(model, images, flip_index=FLIP)
        with torch.no_grad():
            out, mirrored = model(images), model(images.flip(-1))
        index = torch.tensor(FLIP)
        if isinstance(model, SimCCAdapter):
            x, y = simcc_flip_back(mirrored.x_logits, mirrored.y_logits, FLIP, shift=True)
            averaged = type(out)((out.x_logits + x) / 2, (out.y_logits + y) / 2, None, None)
        else:
            heatmaps = heatmap_flip_back(mirrored.heatmaps, FLIP, shift=True)
            averaged = type(out)((out.heatmaps + heatmaps) / 2, None, None)
        keypoints, scores = model.head.decode(averaged)
        torch.testing.assert_close(pred.keypoints, keypoints)
        torch.testing.assert_close(pred.scores, scores)
        vis = (out.vis_logits + mirrored.vis_logits[:, index]) / 2
        torch.testing.assert_close(pred.vis_logits, vis)


def test_predict_crops_reads_flags_only_for_ground_truth_masks_and_unwraps() -> None:
    model = SimCCAdapter(nn.Conv2d(3, 8, 3, stride=4, padding=1), 8, 17, (32, 24),
                         reasoner=partial(REASONER, mask_source="ground_truth")).eval()  # fmt: skip
    images, flags = torch.randn(2, 3, 32, 24), torch.randint(0, 3, (2, 17))
    a = predict_crops(nn.DataParallel(model), images, flags=flags, flip_index=FLIP)
    b = predict_crops(model, images, flags=flags, flip_index=FLIP)
    assert torch.equal(a.keypoints, b.keypoints)
    assert unwrap_model(nn.DataParallel(model)) is model
    with pytest.raises(TypeError, match="model must have a head"):
        predict_crops(nn.Linear(2, 2), images)
    with pytest.raises(ValueError, match="flags must be"):
        predict_crops(model, images, flags=flags[:, :5])


def test_average_outputs_keeps_none_fields_and_types() -> None:
    out = _models()[1](torch.randn(1, 3, 32, 24))
    plain = out._replace(vis_logits=None, mask=None)
    mean = average_outputs(plain, plain._replace(heatmaps=plain.heatmaps + 2))
    assert mean.vis_logits is None
    torch.testing.assert_close(mean.heatmaps, plain.heatmaps + 1)
    with pytest.raises(TypeError, match="outputs must be of one type"):
        average_outputs(plain, tuple(plain))


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, TopDownCocoDataset]:
    ann = make_synthetic_coco(tmp_path, 6, image_size=(90, 120), seed=3)
    return ann, TopDownCocoDataset(ann, tmp_path / "images", input_size=(32, 24))


def test_update_from_batch_maps_crops_back_and_scores_pck_by_the_annotated_box(synthetic) -> None:
    ann, dataset = synthetic
    data = json.loads(ann.read_text())
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}

    def clipped(a: dict) -> list[float]:  # the box clipped to the image, as the crop and MMPose use it
        (x, y, w, h), (iw, ih) = a["bbox"], sizes[a["image_id"]]
        x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, iw - 1), min(y + h, ih - 1)
        return [x1, y1, x2 - x1, y2 - y1]

    boxes = {a["id"]: clipped(a) for a in data["annotations"]}
    batch = next(iter(DataLoader(dataset, batch_size=len(dataset))))
    # the batch carries the annotated box and a per-instance index
    for i in range(len(dataset)):
        assert batch["bbox"][i].tolist() == pytest.approx(boxes[int(batch["ann_id"][i])], abs=1e-4)
    assert batch["index"].tolist() == list(range(len(dataset)))
    split = False
    for shift in (0.8, 1.0, 1.1, 1.2, 1.3, 1.5):  # crop px to the right
        pred = Prediction(batch["keypoints"] + torch.tensor([shift, 0.0]), torch.ones(len(dataset), 17), None)
        evaluator = PoseEvaluator(ann, pck_alpha=0.05)
        evaluator.update_from_batch(batch, pred, (32, 24))
        got = evaluator.compute()["PCK_all"]
        # by hand: an unrotated crop maps x by scale_w / W, so every keypoint of instance i is off by
        # shift * scale_w / 24 image px; it counts when that is below 0.05 * max(w, h) of its box
        correct = counted = 0
        for i in range(len(dataset)):
            w, h = boxes[int(batch["ann_id"][i])][2:]
            error = shift * float(batch["scale"][i, 0]) / 24
            labelled = int((batch["flags"][i] > 0).sum())
            counted += labelled
            correct += labelled if error < 0.05 * max(w, h) else 0
        assert got == pytest.approx(correct / counted), shift
        split |= 0 < correct < counted
    assert split  # some threshold falls between the instances: the box sizes matter, not the crop's
    perfect = PoseEvaluator(ann)
    perfect.update_from_batch(batch, pred._replace(keypoints=batch["keypoints"]), (32, 24))
    assert perfect.compute()["AP"] == pytest.approx(1.0)


def test_evaluate_runs_the_loader_through_predict_crops(synthetic) -> None:
    ann, dataset = synthetic
    model = _models()[0]
    loader = DataLoader(dataset, batch_size=4)
    metrics = evaluate(model, loader, PoseEvaluator(ann), flip_index=FLIP)
    manual = PoseEvaluator(ann)
    for batch in loader:
        manual.update_from_batch(batch, predict_crops(model, batch["image"], flip_index=FLIP), (32, 24))
    assert metrics == pytest.approx(manual.compute(), nan_ok=True)
