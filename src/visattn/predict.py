"""``visattn-predict`` (or ``python -m visattn.predict``): poses for images and person boxes.

Usage::

    # one image and its person boxes (x1 y1 x2 y2, image pixels)
    visattn-predict --checkpoint best.pt --image photo.jpg --box 40 20 210 380 --box 250 30 400 370 \\
        --output poses.json --draw vis/

    # every image of a COCO-style split, with its ground-truth boxes or a detector's boxes
    visattn-predict --checkpoint best.pt --ann-file person_keypoints_val2017.json --image-dir val2017 \\
        --det-file detections.json --det-score-threshold 0.5 --output results.json

Writes COCO keypoint results (``[{"image_id", "category_id", "keypoints": [x, y, score] * K, "score",
"bbox", "vis_probs"}]``; ``score`` is the box score times the mean of the keypoint scores above 0.2, as
in evaluation) and, with ``--draw DIR``, one PNG per image ([`visattn.viz`][visattn.viz]; needs matplotlib).
The checkpoint is one written by ``examples/train.py`` (weights and the
[`visattn.models.create_model`][visattn.models.create_model] arguments). Errors are one line
``error: ... fix: ...`` with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from visattn._json import write_json
from visattn.cli import (
    POSITIVE_INT,
    PROBABILITY,
    CLIError,
    OneLineArgumentParser,
    parse_args,
    run_cli,
    writable_dir,
)
from visattn.inference import PersonPose, TopDownPredictor
from visattn.keypoints import KeypointInfo
from visattn.metrics import instance_scores

__all__ = ["build_parser", "main", "main_cli", "results_json"]


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``visattn-predict``."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = OneLineArgumentParser(prog="visattn-predict", description=__doc__, formatter_class=fmt)
    p.add_argument("--checkpoint", required=True, help="last.pt / best.pt written by examples/train.py")
    one = p.add_argument_group("one image")
    one.add_argument("--image", help="image file")
    one.add_argument("--box", type=float, nargs=4, action="append", metavar=("X1", "Y1", "X2", "Y2"))
    split = p.add_argument_group("a COCO-style split")
    split.add_argument("--ann-file", help="COCO keypoint annotation JSON (images, and ground-truth boxes)")
    split.add_argument("--image-dir", help="folder the annotation's file names are relative to")
    split.add_argument(
        "--det-file", help="person detections (COCO results JSON) instead of ground-truth boxes"
    )
    split.add_argument("--det-score-threshold", type=PROBABILITY, default=0.0, help="minimum detection score")
    p.add_argument("--output", default="poses.json", help="COCO keypoint results JSON")
    p.add_argument("--draw", help="folder for one PNG per image")
    p.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--batch-size", type=POSITIVE_INT, default=64, help="crops per forward pass")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    return p


def _jobs(
    args: argparse.Namespace, keypoint_info: KeypointInfo
) -> list[tuple[int, Path, list[list[float]], list[float]]]:
    """``(image_id, path, xywh boxes, box scores)`` per image, from --image/--box or a split."""
    if args.image is not None:
        if args.ann_file or args.det_file:
            raise CLIError("--image and --ann-file/--det-file both given", "pass one image or one split")
        if not args.box:
            raise CLIError("--image needs at least one --box X1 Y1 X2 Y2", "add the person boxes")
        boxes = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in args.box]
        return [(0, Path(args.image), boxes, [1.0] * len(boxes))]
    if args.ann_file is None or args.image_dir is None:
        raise CLIError("no input given", "pass --image FILE --box ..., or --ann-file and --image-dir")
    from visattn.data import TopDownCocoDataset  # the evaluation's loader: same validation, boxes, clipping

    try:
        dataset = TopDownCocoDataset(
            args.ann_file, args.image_dir, keypoint_info=keypoint_info, det_file=args.det_file,
            det_score_threshold=args.det_score_threshold,
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as err:
        raise CLIError(f"cannot read the split: {err}", "pass COCO keypoint / detection JSON files") from None
    per_image: dict[int, tuple[Path, list[list[float]], list[float]]] = {}
    for index in range(len(dataset)):
        image_id, path, box, score = dataset.instance(index)
        entry = per_image.setdefault(image_id, (Path(path), [], []))
        entry[1].append(list(box))
        entry[2].append(score)
    return [(i, *per_image[i]) for i in sorted(per_image)]


def results_json(image_id: int, people: Sequence[PersonPose]) -> list[dict[str, Any]]:
    """COCO keypoint results of one image's people (``score``: the evaluation's instance rescoring).

    Example:
        >>> box = torch.tensor([0.0, 0.0, 4.0, 4.0])
        >>> person = PersonPose(torch.zeros(2, 2), torch.tensor([0.9, 0.1]), None, box, 1.0)
        >>> results_json(7, [person])[0]["score"]
        0.9
    """
    if not people:
        return []
    scores = torch.stack([p.scores for p in people])  # (N, K)
    rescored = instance_scores(scores, torch.tensor([p.box_score for p in people]))
    out = []
    for person, score in zip(people, rescored.tolist()):
        x1, y1, x2, y2 = person.box.tolist()
        triples = torch.cat([person.keypoints, person.scores[:, None]], dim=1)  # (K, 3)
        keypoints = [round(v, 3) for v in triples.flatten().tolist()]
        row: dict[str, Any] = {"image_id": image_id, "category_id": 1, "keypoints": keypoints}
        row |= {"score": round(score, 6), "bbox": [x1, y1, x2 - x1, y2 - y1]}
        if person.vis_probs is not None:
            row["vis_probs"] = [round(v, 4) for v in person.vis_probs.tolist()]
        out.append(row)
    return out


def _draw(folder: Path, image_path: Path, people: Sequence[PersonPose], predictor: TopDownPredictor) -> Path:
    from matplotlib.figure import Figure

    from visattn.inference import read_rgb
    from visattn.viz import draw_pose, save_figure

    image = read_rgb(image_path)
    fig = Figure(figsize=(8, 8 * image.shape[0] / image.shape[1]))
    ax = fig.add_subplot(1, 1, 1)
    keypoints = torch.stack([p.keypoints for p in people])  # (N, K, 2)
    probs = None if people[0].vis_probs is None else torch.stack([p.vis_probs for p in people])  # type: ignore[misc]
    draw_pose(image, keypoints, predictor.keypoint_info, vis_probs=probs, ax=ax)
    return save_figure(fig, folder / f"{image_path.stem}.png")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``visattn-predict``; returns the exit status."""
    args = parse_args(build_parser(), argv)
    output = Path(args.output)
    writable_dir(output.parent if str(output.parent) else Path("."), "--output folder")
    draw = writable_dir(args.draw, "--draw") if args.draw else None
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise CLIError(f"--device {args.device} is not a device", "pass cpu, cuda or cuda:N") from None
    try:
        predictor = TopDownPredictor.from_checkpoint(
            args.checkpoint, flip_test=args.flip_test, device=device, batch_size=args.batch_size
        )
    except (TypeError, ValueError, RuntimeError) as err:
        raise CLIError(
            f"cannot build the model of {args.checkpoint}: {err}", "pass a train.py checkpoint"
        ) from None
    jobs = _jobs(args, predictor.keypoint_info)
    results: list[dict[str, Any]] = []
    for image_id, path, boxes, scores in jobs:
        try:
            people = predictor(path, boxes, box_format="xywh", box_scores=scores)
        except ValueError as err:
            raise CLIError(f"{path}: {err}", "pass boxes x1 y1 x2 y2 with x2 > x1 and y2 > y1") from None
        results += results_json(image_id, people)
        if draw is not None and people:
            print(f"drew {_draw(draw, path, people, predictor)}")
    write_json(output, results)
    print(f"{len(results)} people in {len(jobs)} image(s) -> {output}")
    return 0


def main_cli() -> None:
    """The console entry point: [`main`][visattn.predict.main] with one-line errors (exit status 2)."""
    run_cli(main, sys.argv[1:])


if __name__ == "__main__":
    main_cli()
