"""Prediction through the head (flip test included) and the batch-to-evaluator glue."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
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
    with pytest.raises(ValueError, match=r"flip_index must be a permutation of range\(K\) with K=17"):
        predict_crops(model, images, flags=flags, flip_index=[1, 0])


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


# ----------------------------------------------------------------------------------------------------
# the top-down predictor: images + boxes -> poses in image pixels


def _clipped_xywh(data: dict) -> dict[int, list[float]]:
    """The dataset's rule: annotated boxes clipped to the image (x2 <= w - 1, y2 <= h - 1)."""
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    out = {}
    for a in data["annotations"]:
        (x, y, w, h), (iw, ih) = a["bbox"], sizes[a["image_id"]]
        x1, y1 = min(max(x, 0.0), iw - 1.0), min(max(y, 0.0), ih - 1.0)
        x2, y2 = min(max(x + w, 0.0), iw - 1.0), min(max(y + h, 0.0), ih - 1.0)
        out[a["id"]] = [x1, y1, x2 - x1, y2 - y1]
    return out


def test_predictor_equals_the_evaluation_path_on_the_real_coco_samples() -> None:
    from tests.helpers import COCO_DIR, require_shared_data
    from visattn.inference import TopDownPredictor
    from visattn.models import create_model

    require_shared_data()
    ann = COCO_DIR / "test_coco.json"
    torch.manual_seed(0)
    model = create_model("tiny", input_size=(64, 48), visattn={"embed_dim": 32, "depth": 1}).eval()
    dataset = TopDownCocoDataset(ann, COCO_DIR, input_size=(64, 48))
    batch = next(iter(DataLoader(dataset, batch_size=len(dataset))))
    pred = predict_crops(model, batch["image"], flip_index=FLIP)
    from visattn.data import crop_to_image

    expected = crop_to_image(pred.keypoints, batch["center"], batch["scale"], batch["rotation"], (64, 48))
    data = json.loads(ann.read_text())
    boxes = _clipped_xywh(data)
    files = {im["id"]: COCO_DIR / im["file_name"] for im in data["images"]}
    predictor = TopDownPredictor(model, keypoint_info="coco", batch_size=3)
    order = {}
    for i in range(len(dataset)):
        order.setdefault(int(batch["image_id"][i]), []).append(i)
    ids = sorted(order)
    people = predictor.predict_many(
        [files[i] for i in ids],
        [[boxes[int(batch["ann_id"][j])] for j in order[i]] for i in ids],
        box_format="xywh",
    )
    compared = 0
    for image_id, persons in zip(ids, people):
        for j, person in zip(order[image_id], persons):
            torch.testing.assert_close(person.keypoints, expected[j], atol=1e-3, rtol=0)
            torch.testing.assert_close(person.scores, pred.scores[j], atol=1e-5, rtol=0)
            torch.testing.assert_close(person.vis_probs, pred.vis_probs[j], atol=1e-5, rtol=0)
            x, y, w, h = boxes[int(batch["ann_id"][j])]
            assert person.box.tolist() == pytest.approx([x, y, x + w, y + h], abs=1e-3)
            compared += 1
    assert compared == len(dataset) > 3


def test_predictor_inputs_and_checkpoint(tmp_path: Path) -> None:
    from visattn.checkpoint import save_checkpoint
    from visattn.inference import TopDownPredictor, read_rgb
    from visattn.models import create_model

    config = {"name": "tiny", "input_size": [32, 24], "visattn": {"embed_dim": 16, "depth": 1}}
    model = create_model(**config)
    image = (torch.rand(3, 60, 80) * 255).to(torch.uint8)
    predictor = TopDownPredictor(model, flip_test=False)
    a = predictor(image, torch.tensor([[10.0, 5.0, 50.0, 55.0]]))
    b = predictor(image.permute(1, 2, 0).numpy(), [[10, 5, 40, 50]], box_format="xywh", box_scores=[0.7])
    torch.testing.assert_close(a[0].keypoints, b[0].keypoints)
    assert (a[0].box_score, b[0].box_score) == (1.0, pytest.approx(0.7))
    assert predictor(image, []) == []
    save_checkpoint(tmp_path / "m.pt", {"model": model.state_dict(), "model_config": config})
    restored = TopDownPredictor.from_checkpoint(tmp_path / "m.pt", flip_test=False)
    torch.testing.assert_close(restored(image, [[10, 5, 50, 55]])[0].keypoints, a[0].keypoints)
    with pytest.raises(ValueError, match=r"boxes\[0\] must be finite \(N, 4\)"):
        predictor(image, [[1, 2, 3]])
    with pytest.raises(ValueError, match="positive width and height"):
        predictor(image, [[10, 10, 5, 20]])
    with pytest.raises(ValueError, match=r"box_scores\[0\] must hold one score per box"):
        predictor(image, [[1, 2, 30, 40]], box_scores=[0.5, 0.5])
    with pytest.raises(ValueError, match="uint8 RGB"):
        read_rgb(torch.zeros(3, 4, 5))
    with pytest.raises(TypeError, match=r"boxes\[0\] must be \(N, 4\) numbers"):
        predictor(image, [["a", "b", "c", "d"]])
    with pytest.raises(ValueError, match="box_format must be one of"):
        predictor(image, [[1, 2, 30, 40]], box_format="cxcywh")
    with pytest.raises(ValueError, match="K=14"):
        TopDownPredictor(model, keypoint_info="crowdpose")


def test_detection_boxes_keep_every_instance(synthetic, tmp_path: Path) -> None:
    """Detections all have ann_id -1: the glue's instance id (the dataset index) keeps each of them."""
    ann, _ = synthetic
    data = json.loads(ann.read_text())
    dets = [
        {"image_id": a["image_id"], "bbox": a["bbox"], "score": 1.0, "category_id": 1}
        for a in data["annotations"]
        if a["num_keypoints"] > 0
    ]
    assert len(dets) > len(data["images"])  # several people per image
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(dets))
    gt = TopDownCocoDataset(ann, ann.parent / "images", input_size=(32, 24))
    by_det = TopDownCocoDataset(ann, ann.parent / "images", input_size=(32, 24), det_file=det_file)
    assert len(by_det) == len(dets)
    gt_batch = next(iter(DataLoader(gt, batch_size=len(gt))))
    batch = next(iter(DataLoader(by_det, batch_size=len(by_det))))
    assert (batch["ann_id"] == -1).all()
    # the detections are the ground-truth boxes: predict the ground truth of each box, in its crop
    order = [int(np.argmin([np.abs(np.array(b) - np.array(g)).sum() for g in gt_batch["bbox"].tolist()]))
             for b in batch["bbox"].tolist()]  # fmt: skip
    keypoints = gt_batch["keypoints"][order]
    evaluator = PoseEvaluator(ann)
    evaluator.update_from_batch(batch, Prediction(keypoints, torch.ones(len(dets), 17), None), (32, 24))
    assert len(evaluator.results()) == len(dets)
    assert evaluator.compute()["AP"] == pytest.approx(1.0)
