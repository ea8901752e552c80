"""visattn against MMPose's own functions on identical inputs: codecs, crop geometry, flips, OKS, PCK, losses.

A measurement tool, not a test: it needs an MMPose source tree, which visattn neither ships nor
depends on. Only MMPose's plain numpy / torch functions run; their files are loaded one by one with
``importlib`` (MMPose's package ``__init__`` needs mmcv and mmengine), with small stand-ins for the
registry and codec base class they import. Nothing of MMPose is copied into visattn.

Every row runs visattn and MMPose on the same random inputs (fixed seed) and prints the largest
absolute difference. "agrees" means within float32 rounding: 1e-5 for values in [0, 1] (targets,
scores, OKS, PCK), 1e-3 pixels for coordinates, 1e-5 relative for losses. Rows marked "no" are
conventions that differ on purpose; docs/differences.md explains each.

Usage (MMPose from a clone, or exported from a bare mirror)::

    git --git-dir=MMPOSE.git archive HEAD mmpose/codecs mmpose/evaluation/functional \\
        mmpose/models/losses mmpose/models/utils/tta.py mmpose/structures/bbox \\
        mmpose/structures/keypoint/transforms.py mmpose/datasets/transforms/topdown_transforms.py \\
        | tar -x -C /tmp/mmpose-src
    python benchmarks/check_mmpose_conventions.py --mmpose /tmp/mmpose-src [--commit SHA] [--seed 0]
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from visattn.codecs import (
    heatmap_decode,
    heatmap_encode,
    heatmap_flip_back,
    simcc_decode,
    simcc_encode,
    simcc_flip_back,
)
from visattn.data.transforms import box_to_center_scale, flip_keypoints, get_affine_matrix
from visattn.keypoints import COCO_KEYPOINTS
from visattn.losses import heatmap_mse_loss, simcc_kl_loss
from visattn.metrics import keypoint_oks, pck

INPUT_HW = (256, 192)  # crop (H, W)
HEATMAP_HW = (64, 48)
SPLIT = 2.0
SIMCC_SIGMA = 6.0
HEATMAP_SIGMA = 2.0
FLIP = list(COCO_KEYPOINTS.flip_index)
K = COCO_KEYPOINTS.num_keypoints

VALUE_TOL = 1e-5
PIXEL_TOL = 1e-3
LOSS_RTOL = 1e-5


class Row(NamedTuple):
    check: str
    diff: float
    agrees: bool
    note: str


# ---------------------------------------------------------------------------------------------------
# loading MMPose's files without its package


class _Registry:
    """Stand-in for an mmengine registry: ``@X.register_module()`` returns the class unchanged."""

    def register_module(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        return lambda obj: obj


class _BaseKeypointCodec:
    """Stand-in for ``mmpose.codecs.base.BaseKeypointCodec`` (it imports mmengine)."""

    def __init__(self) -> None:
        pass


def _module(name: str, path: Path | None = None) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(path)] if path is not None else []  # a package: submodules load from path
    sys.modules[name] = module
    return module


def _load(name: str, path: Path) -> types.ModuleType:
    if not path.is_file():
        raise SystemExit(f"{path} not found: --mmpose must hold mmpose/... (see this script's docstring)")
    package = path.name == "__init__.py"
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(path.parent)] if package else None
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _static_method(path: Path, cls: str, name: str, namespace: dict[str, Any]) -> Callable[..., Any]:
    """One method of a class in ``path``, compiled alone (the rest of the file needs mmcv)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    item.decorator_list = []
                    code = compile(ast.Module(body=[item], type_ignores=[]), str(path), "exec")
                    scope = dict(namespace)
                    exec(code, scope)
                    return scope[name]  # type: ignore[no-any-return]
    raise SystemExit(f"{cls}.{name} not found in {path}")


def load_mmpose(root: Path) -> types.SimpleNamespace:
    """MMPose's numpy / torch functions from the source tree ``root`` (holding ``mmpose/``)."""
    pkg = root / "mmpose"
    if any(name == "mmpose" or name.startswith("mmpose.") for name in sys.modules):
        raise SystemExit("an mmpose package is already imported; run this script in a clean interpreter")
    _module("mmpose", pkg)
    registry = _module("mmpose.registry")
    registry.MODELS = registry.KEYPOINT_CODECS = registry.TRANSFORMS = _Registry()  # type: ignore[attr-defined]
    _module("mmpose.codecs", pkg / "codecs")
    _module("mmpose.codecs.base").BaseKeypointCodec = _BaseKeypointCodec  # type: ignore[attr-defined]
    _module("mmpose.evaluation", pkg / "evaluation")
    _module("mmpose.evaluation.functional", pkg / "evaluation" / "functional")
    _module("mmpose.structures", pkg / "structures")
    _module("mmpose.structures.bbox").bbox_overlaps = None  # type: ignore[attr-defined]  # unused by oks_iou
    _module("mmpose.structures.keypoint")
    _module("mmpose.models", pkg / "models")
    _module("mmpose.models.losses", pkg / "models" / "losses")
    _module("mmpose.models.utils", pkg / "models" / "utils")

    utils = _load("mmpose.codecs.utils", pkg / "codecs" / "utils" / "__init__.py")
    return types.SimpleNamespace(
        utils=utils,
        refinement=sys.modules["mmpose.codecs.utils.refinement"],
        simcc_label=_load("mmpose.codecs.simcc_label", pkg / "codecs" / "simcc_label.py"),
        msra=_load("mmpose.codecs.msra_heatmap", pkg / "codecs" / "msra_heatmap.py"),
        keypoint_eval=_load(
            "mmpose.evaluation.functional.keypoint_eval",
            pkg / "evaluation" / "functional" / "keypoint_eval.py",
        ),
        nms=_load("mmpose.evaluation.functional.nms", pkg / "evaluation" / "functional" / "nms.py"),
        bbox=_load("mmpose.structures.bbox.transforms", pkg / "structures" / "bbox" / "transforms.py"),
        keypoint=_load(
            "mmpose.structures.keypoint.transforms", pkg / "structures" / "keypoint" / "transforms.py"
        ),
        tta=_load("mmpose.models.utils.tta", pkg / "models" / "utils" / "tta.py"),
        cls_loss=_load(
            "mmpose.models.losses.classification_loss", pkg / "models" / "losses" / "classification_loss.py"
        ),
        hm_loss=_load("mmpose.models.losses.heatmap_loss", pkg / "models" / "losses" / "heatmap_loss.py"),
        fix_aspect_ratio=_static_method(
            pkg / "datasets" / "transforms" / "topdown_transforms.py",
            "TopdownAffine",
            "_fix_aspect_ratio",
            {"np": np},
        ),
    )


# ---------------------------------------------------------------------------------------------------
# helpers


def _max(a: Any) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.abs(a).max()) if a.size else 0.0


def _row(check: str, diff: float, tol: float, note: str, *, expect_equal: bool = True) -> Row:
    agrees = diff <= tol
    if not expect_equal and agrees:
        note = f"{note} (no difference on these inputs)"
    return Row(check, diff, agrees, note)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


# ---------------------------------------------------------------------------------------------------
# checks


def heatmap_rows(mm: types.SimpleNamespace, rng: np.random.Generator) -> list[Row]:
    (h, w), (hf, wf) = INPUT_HW, HEATMAP_HW
    stride = np.array([w / wf, h / hf])
    gh = mm.utils.generate_gaussian_heatmaps
    gu = mm.utils.generate_unbiased_gaussian_heatmaps
    rows: list[Row] = []

    def both(
        kp_px: np.ndarray, fn: Callable[..., Any]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        vis = torch.full((kp_px.shape[0], K), 2)
        ours = heatmap_encode(_t(kp_px), vis, INPUT_HW, HEATMAP_HW, sigma=HEATMAP_SIGMA)
        theirs_maps, theirs_w = [], []
        for kp in kp_px:
            m, wt = fn(
                (wf, hf), (kp / stride)[None].astype(np.float32), np.ones((1, K), np.float32), HEATMAP_SIGMA
            )
            theirs_maps.append(m)
            theirs_w.append(wt[0])
        return ours.heatmaps.numpy(), ours.weights.numpy(), np.stack(theirs_maps), np.stack(theirs_w)

    # inside the crop: targets; a band around it: weights
    inside = rng.uniform([0, 0], [w - 1, h - 1], size=(40, K, 2))
    band = rng.uniform(
        [-12 * stride[0], -12 * stride[1]], [w + 12 * stride[0], h + 12 * stride[1]], size=(40, K, 2)
    )

    ours, ow, theirs, tw = both(inside, gu)
    keep = (ow > 0) & (tw > 0)
    rows.append(
        _row(
            "heatmap target vs generate_unbiased_gaussian_heatmaps",
            _max((ours - theirs)[keep]),
            VALUE_TOL,
            "sub-pixel Gaussian on the whole map in both",
        )
    )
    _, ow, _, tw = both(band, gu)
    rows.append(
        _row(
            "heatmap weights vs generate_unbiased_gaussian_heatmaps",
            _max(ow - tw),
            VALUE_TOL,
            f"{int((ow != tw).sum())} of {ow.size} keypoints near the edge: "
            "band [-3s-1, Wf+3s) vs [-3s, Wf-1+3s]",
            expect_equal=False,
        )
    )

    on_cells = np.round(inside / stride) * stride  # whole heatmap cells
    ours, ow, theirs, tw = both(on_cells, gh)
    cells = np.round(on_cells / stride).astype(int)  # (N, K, 2)
    jj, ii = np.meshgrid(np.arange(wf), np.arange(hf))
    window = (np.abs(jj[None, None] - cells[..., 0, None, None]) <= 3 * HEATMAP_SIGMA) & (
        np.abs(ii[None, None] - cells[..., 1, None, None]) <= 3 * HEATMAP_SIGMA
    )
    rows.append(
        _row(
            "heatmap target vs generate_gaussian_heatmaps, cell centres, 3s window",
            _max((ours - theirs)[window]),
            VALUE_TOL,
            "same values where MMPose draws its Gaussian",
        )
    )
    rows.append(
        _row(
            "heatmap target vs generate_gaussian_heatmaps, cell centres, whole map",
            _max(ours - theirs),
            VALUE_TOL,
            "MMPose cuts the Gaussian at 3 sigma (largest value cut: exp(-(3s+1)^2 / 2s^2))",
            expect_equal=False,
        )
    )
    ours, _, theirs, _ = both(inside, gh)
    rows.append(
        _row(
            "heatmap target vs generate_gaussian_heatmaps, sub-pixel centres",
            _max(ours - theirs),
            VALUE_TOL,
            "MMPose (unbiased=False) rounds the centre to a cell",
            expect_equal=False,
        )
    )
    _, ow, _, tw = both(band, gh)
    rows.append(
        _row(
            "heatmap weights vs generate_gaussian_heatmaps",
            _max(ow - tw),
            VALUE_TOL,
            f"{int((ow != tw).sum())} of {ow.size} keypoints near the edge: band of the rounded centre",
            expect_equal=False,
        )
    )
    return rows


def heatmap_decode_rows(mm: types.SimpleNamespace, rng: np.random.Generator) -> list[Row]:
    (h, w), (hf, wf) = INPUT_HW, HEATMAP_HW
    rows: list[Row] = []
    quarter = mm.msra.MSRAHeatmap((w, h), (wf, hf), HEATMAP_SIGMA)
    dark = mm.msra.MSRAHeatmap((w, h), (wf, hf), HEATMAP_SIGMA, unbiased=True, blur_kernel_size=11)

    maps = rng.random((60, K, hf, wf), dtype=np.float32)
    ours, ours_score = heatmap_decode(_t(maps), INPUT_HW)
    theirs = np.stack([quarter.decode(m)[0][0] for m in maps])
    theirs_score = np.stack([quarter.decode(m)[1][0] for m in maps])
    flat = maps.reshape(*maps.shape[:2], -1).argmax(-1)
    row, col = flat // wf, flat % wf
    edge = (row <= 1) | (col <= 1)
    diff = np.abs(ours.numpy() - theirs).max(-1)
    rows.append(
        _row(
            "quarter decode vs MSRAHeatmap.decode, argmax off rows/cols 0-1",
            _max(diff[~edge]),
            PIXEL_TOL,
            "argmax + 0.25 sign step, then x stride",
        )
    )
    rows.append(
        _row(
            "quarter decode vs MSRAHeatmap.decode, argmax in rows/cols 0-1",
            _max(diff[edge]),
            PIXEL_TOL,
            f"{int(edge.sum())} maps: MMPose shifts x only if 1 < j < Wf-1 and i > 0 (y likewise); "
            "visattn if 0 < j < Wf-1",
            expect_equal=False,
        )
    )
    rows.append(
        _row(
            "quarter decode scores vs MSRAHeatmap.decode",
            _max(ours_score.numpy() - theirs_score),
            VALUE_TOL,
            "maximum value",
        )
    )

    negative = maps[:4] - 2.0  # every value < 0
    ours_neg, ours_neg_score = heatmap_decode(_t(negative), INPUT_HW)
    theirs_neg = [quarter.decode(m) for m in negative]
    rows.append(
        _row(
            "quarter decode vs MSRAHeatmap.decode, map maximum <= 0",
            _max(ours_neg.numpy() - np.stack([t[0][0] for t in theirs_neg])),
            PIXEL_TOL,
            "MMPose returns location -1 (times the stride: -4 px); visattn the argmax; same score "
            f"(max diff {_max(ours_neg_score.numpy() - np.stack([t[1][0] for t in theirs_neg])):.1e})",
            expect_equal=False,
        )
    )

    # DARK on clean sub-pixel Gaussians of random height
    kp = rng.uniform([0, 0], [w - 1, h - 1], size=(60, K, 2))
    clean = heatmap_encode(_t(kp), torch.full((60, K), 2), INPUT_HW, HEATMAP_HW, sigma=HEATMAP_SIGMA)
    gauss = (clean.heatmaps.numpy() * rng.uniform(0.3, 1.0, size=(60, K, 1, 1))).astype(np.float32)
    ours_dark, _ = heatmap_decode(_t(gauss), INPUT_HW, refinement="dark", blur_kernel_size=11)
    theirs_dark = np.stack([dark.decode(m.copy())[0][0] for m in gauss])
    flat = gauss.reshape(*gauss.shape[:2], -1).argmax(-1)
    row, col = flat // wf, flat % wf
    interior = (row >= 7) & (row <= hf - 8) & (col >= 7) & (col <= wf - 8)  # blur radius 5 + stencil 2
    diff = np.abs(ours_dark.numpy() - theirs_dark).max(-1)
    rows.append(
        _row(
            "DARK decode vs MSRAHeatmap(unbiased=True), argmax >= 7 cells from the border",
            _max(diff[interior]),
            PIXEL_TOL,
            "blur (kernel 11) + log + Newton step",
        )
    )
    rows.append(
        _row(
            "DARK decode vs MSRAHeatmap(unbiased=True), argmax < 7 cells from the border",
            _max(diff[~interior]),
            PIXEL_TOL,
            f"{int((~interior).sum())} maps: MMPose blurs a zero-padded map (visattn reflects it), "
            "no step within 2 cells",
            expect_equal=False,
        )
    )
    return rows


def simcc_rows(mm: types.SimpleNamespace, rng: np.random.Generator) -> list[Row]:
    h, w = INPUT_HW
    rows: list[Row] = []
    label = mm.simcc_label.SimCCLabel((w, h), sigma=SIMCC_SIGMA, simcc_split_ratio=SPLIT, normalize=True)

    def both(kp: np.ndarray) -> tuple[Any, Any]:
        ours = simcc_encode(
            _t(kp), torch.full(kp.shape[:2], 2), INPUT_HW, split_ratio=SPLIT, sigma=SIMCC_SIGMA
        )
        theirs = [label.encode(k[None], np.ones((1, K), np.float32)) for k in kp]
        tx = np.concatenate([t["keypoint_x_labels"] for t in theirs])
        ty = np.concatenate([t["keypoint_y_labels"] for t in theirs])
        tw = np.concatenate([t["keypoint_weights"] for t in theirs])
        return ours, (tx, ty, tw)

    inside = rng.uniform([0, 0], [w - 1, h - 1], size=(40, K, 2))
    on_bins = np.round(inside * SPLIT) / SPLIT
    ours, (tx, ty, tw) = both(on_bins)
    rows.append(
        _row(
            "SimCC labels vs SimCCLabel, centres on whole bins",
            max(_max(ours.x_labels.numpy() - tx), _max(ours.y_labels.numpy() - ty)),
            VALUE_TOL,
            "normalised Gaussians, sigma 6 bins, split 2",
        )
    )
    ours, (tx, ty, tw) = both(inside)
    rows.append(
        _row(
            "SimCC labels vs SimCCLabel, sub-pixel centres",
            max(_max(ours.x_labels.numpy() - tx), _max(ours.y_labels.numpy() - ty)),
            VALUE_TOL,
            "MMPose rounds x * r to a bin; visattn (as the authors) does not",
            expect_equal=False,
        )
    )
    band = rng.uniform([-25, -25], [w + 25, h + 25], size=(40, K, 2))
    ours, (tx, ty, tw) = both(band)
    ow = ours.weights.numpy()
    rows.append(
        _row(
            "SimCC weights vs SimCCLabel",
            _max(ow - tw),
            VALUE_TOL,
            f"{int((ow != tw).sum())} of {ow.size} keypoints near the edge: band of the rounded centre",
            expect_equal=False,
        )
    )

    wx, hy = round(w * SPLIT), round(h * SPLIT)
    x = rng.standard_normal((30, K, wx)).astype(np.float32) * 3
    y = rng.standard_normal((30, K, hy)).astype(np.float32) * 3
    kp, score = simcc_decode(_t(x), _t(y), SPLIT)
    theirs_kp, theirs_raw = label.decode(x, y)
    _, theirs_soft = mm.utils.get_simcc_maximum(x.reshape(-1, wx), y.reshape(-1, hy), apply_softmax=True)
    rows.append(
        _row(
            "SimCC decode locations vs SimCCLabel.decode",
            _max(kp.numpy() - theirs_kp),
            PIXEL_TOL,
            "argmax / split ratio",
        )
    )
    rows.append(
        _row(
            "SimCC scores vs get_simcc_maximum(apply_softmax=True)",
            _max(score.numpy().reshape(-1) - theirs_soft),
            VALUE_TOL,
            "min of the two max softmax probabilities",
        )
    )
    rows.append(
        _row(
            "SimCC scores vs SimCCLabel.decode (raw)",
            _max(score.numpy() - theirs_raw),
            VALUE_TOL,
            "MMPose's default score is min(max x, max y) of the raw logits",
            expect_equal=False,
        )
    )
    xn, yn = x[:3] - 20.0, y[:3] - 20.0
    kp_n, _ = simcc_decode(_t(xn), _t(yn), SPLIT)
    theirs_n, _ = label.decode(xn, yn)
    rows.append(
        _row(
            "SimCC decode vs SimCCLabel.decode, raw max <= 0",
            _max(kp_n.numpy() - theirs_n),
            PIXEL_TOL,
            "MMPose returns -1 / r; visattn the argmax (its score is a probability, never <= 0)",
            expect_equal=False,
        )
    )
    return rows


def flip_rows(mm: types.SimpleNamespace, rng: np.random.Generator) -> list[Row]:
    (h, w), (hf, wf) = INPUT_HW, HEATMAP_HW
    rows: list[Row] = []
    maps = torch.from_numpy(rng.random((4, K, hf, wf), dtype=np.float32))
    for shift in (True, False):
        ours = heatmap_flip_back(maps, FLIP, shift=shift)
        theirs = mm.tta.flip_heatmaps(maps.clone(), flip_indices=FLIP, shift_heatmap=shift)
        rows.append(
            _row(
                f"heatmap flip-back shift={shift} vs flip_heatmaps",
                _max((ours - theirs).numpy()),
                0.0,
                "exact",
            )
        )
    wx, hy = round(w * SPLIT), round(h * SPLIT)
    x = torch.from_numpy(rng.standard_normal((4, K, wx)).astype(np.float32))
    y = torch.from_numpy(rng.standard_normal((4, K, hy)).astype(np.float32))
    tx, ty = mm.tta.flip_vectors(x.clone(), y.clone(), FLIP)
    ox, oy = simcc_flip_back(x, y, FLIP, shift=False)
    rows.append(
        _row(
            "SimCC flip-back shift=False vs flip_vectors",
            max(_max((ox - tx).numpy()), _max((oy - ty).numpy())),
            0.0,
            "exact",
        )
    )
    ox, _ = simcc_flip_back(x, y, FLIP, shift=True)
    rows.append(
        _row(
            "SimCC flip-back shift=True vs flip_vectors",
            _max((ox - tx).numpy()),
            0.0,
            "the authors' one-bin shift; MMPose's SimCC flip test has none",
            expect_equal=False,
        )
    )
    kp = rng.uniform(0, 640, size=(5, K, 2))
    vis = rng.integers(0, 3, size=(5, K))
    ours_kp, ours_vis = flip_keypoints(_t(kp), _t(vis), 640, FLIP)
    theirs_kp, theirs_vis = mm.keypoint.flip_keypoints(kp.copy(), vis.copy()[..., None], (640, 480), FLIP)
    rows.append(
        _row(
            "keypoint flip vs flip_keypoints (x -> w - 1 - x)",
            max(_max(ours_kp.numpy() - theirs_kp), _max(ours_vis.numpy() - theirs_vis[..., 0])),
            PIXEL_TOL,
            "keypoints and flags swapped by flip_index",
        )
    )
    return rows


def geometry_rows(mm: types.SimpleNamespace, rng: np.random.Generator) -> list[Row]:
    h, w = INPUT_HW
    rows: list[Row] = []
    xy = rng.uniform(0, 500, size=(50, 2))
    wh = rng.uniform(50, 300, size=(50, 2))  # person boxes: the crop magnifies at most ~3x
    boxes = np.concatenate([xy, wh], 1)
    center, scale = box_to_center_scale(_t(boxes), w / h, 1.25)
    t_center, t_scale = mm.bbox.bbox_xywh2cs(boxes, padding=1.25)
    t_scale = mm.fix_aspect_ratio(t_scale, aspect_ratio=w / h)
    rows.append(
        _row(
            "box -> centre/scale vs bbox_xywh2cs + _fix_aspect_ratio",
            max(_max(center.numpy() - t_center), _max(scale.numpy() - t_scale)),
            PIXEL_TOL,
            "padding 1.25, aspect W/H",
        )
    )
    rot = rng.uniform(-45, 45, size=50)
    points = rng.uniform(-50, 550, size=(50, 8, 2))
    for inverse in (False, True):
        ours = get_affine_matrix(center, scale, _t(rot), INPUT_HW, inverse=inverse).numpy()
        theirs = np.stack(
            [mm.bbox.get_warp_matrix(c, s, r, (w, h), inv=inverse) for c, s, r in zip(t_center, t_scale, rot)]
        )
        src = points if not inverse else points * (w / 600.0)
        ours_pts = src @ ours[:, :, :2].transpose(0, 2, 1) + ours[:, None, :, 2]
        theirs_pts = src @ theirs[:, :, :2].transpose(0, 2, 1) + theirs[:, None, :, 2]
        name = "crop -> image" if inverse else "image -> crop"
        rows.append(
            _row(
                f"warp {name} vs get_warp_matrix (rotation +-45 deg)",
                _max(ours_pts - theirs_pts),
                PIXEL_TOL,
                "on points; MMPose builds the matrix from float32 points",
            )
        )
    return rows


def oks_pck_rows(mm: types.SimpleNamespace, rng: np.random.Generator) -> list[Row]:
    rows: list[Row] = []
    sigmas = np.asarray(COCO_KEYPOINTS.sigmas, dtype=np.float64)
    gt = rng.uniform(0, 300, size=(K, 2))
    det = gt[None] + rng.normal(0, 6, size=(40, K, 2))
    a_g, a_d = 9000.0, rng.uniform(4000, 15000, size=40)
    g = np.concatenate([gt, np.full((K, 1), 2.0)], 1).reshape(-1)
    d = np.concatenate([det, np.full((40, K, 1), 2.0)], 2).reshape(40, -1)
    theirs = mm.nms.oks_iou(g, d, a_g, a_d, sigmas=sigmas)
    ours = keypoint_oks(_t(det), _t(np.broadcast_to(gt, det.shape)), _t((a_g + a_d) / 2), sigmas=_t(sigmas))
    rows.append(
        _row("OKS vs oks_iou", _max(ours.numpy() - theirs), VALUE_TOL, "area = mean of the two areas")
    )

    n = 200
    gt = rng.uniform(0, 300, size=(n, K, 2))
    # keypoint types labelled at different rates, the rarely labelled ones harder (as occluded limbs)
    p_label = np.linspace(1.0, 0.2, K)
    pred = gt + rng.normal(0, 1, size=(n, K, 2)) * np.linspace(3, 10, K)[None, :, None]
    labelled = rng.random((n, K)) < p_label
    flags = np.where(labelled, rng.integers(1, 3, size=(n, K)), 0)
    wh = rng.uniform(60, 200, size=(n, 2))
    boxes = np.concatenate([rng.uniform(0, 50, size=(n, 2)), wh], 1)
    norm = np.repeat(wh.max(1, keepdims=True), 2, axis=1)
    for subset, mask in (("all", flags > 0), ("occluded", flags == 1)):
        _, theirs_pck, _ = mm.keypoint_eval.keypoint_pck_accuracy(pred, gt, mask, 0.05, norm.copy())
        for mode in ("per_keypoint", "pooled"):
            ours_pck = pck(_t(pred), _t(gt), _t(flags), _t(boxes), subset=subset, mode=mode)
            rows.append(
                _row(
                    f"PCK {subset} mode={mode} vs keypoint_pck_accuracy",
                    abs(ours_pck - float(theirs_pck)),
                    VALUE_TOL,
                    "mean of per-keypoint accuracies"
                    if mode == "per_keypoint"
                    else "visattn's default pools all keypoints; MMPose averages per keypoint type",
                    expect_equal=mode == "per_keypoint",
                )
            )
    return rows


def loss_rows(mm: types.SimpleNamespace, rng: np.random.Generator) -> list[Row]:
    rows: list[Row] = []
    b, wx, hy, hf, wf = 8, 384, 512, 64, 48
    x = torch.from_numpy(rng.standard_normal((b, K, wx)).astype(np.float32))
    y = torch.from_numpy(rng.standard_normal((b, K, hy)).astype(np.float32))
    kp = rng.uniform([0, 0], [191, 255], size=(b, K, 2))
    labels = simcc_encode(_t(kp), torch.full((b, K), 2), INPUT_HW, split_ratio=SPLIT, sigma=SIMCC_SIGMA)
    weights = torch.from_numpy((rng.random((b, K)) < 0.8).astype(np.float32))
    for kwargs, name in (
        ({}, "defaults"),
        ({"beta": 10.0, "label_softmax": True}, "RTMPose beta=10, label_softmax"),
    ):
        theirs = mm.cls_loss.KLDiscretLoss(use_target_weight=True, **kwargs)(
            (x, y), (labels.x_labels, labels.y_labels), weights
        )
        ours = simcc_kl_loss(x, y, labels.x_labels, labels.y_labels, weights, **kwargs)  # type: ignore[arg-type]
        rows.append(
            _row(
                f"SimCC KL ({name}) x B vs KLDiscretLoss",
                abs(float(ours) * b - float(theirs)),
                LOSS_RTOL * abs(float(theirs)),
                f"MMPose sums over the batch: MMPose = B x visattn (B = {b}); loss {float(theirs):.4f}",
            )
        )
    pred = torch.from_numpy(rng.random((b, K, hf, wf), dtype=np.float32))
    target = heatmap_encode(
        _t(kp), torch.full((b, K), 2), INPUT_HW, HEATMAP_HW, sigma=HEATMAP_SIGMA
    ).heatmaps.float()
    theirs = mm.hm_loss.KeypointMSELoss(use_target_weight=True)(pred, target, weights)
    ours = heatmap_mse_loss(pred, target, weights)
    rows.append(
        _row(
            "heatmap MSE x 2 vs KeypointMSELoss(use_target_weight=True)",
            abs(float(ours) * 2 - float(theirs)),
            LOSS_RTOL * abs(float(theirs)),
            f"visattn keeps SimpleBaseline's 0.5 (0/1 weights); loss {float(theirs):.5f}",
        )
    )
    return rows


def _commit(root: Path, given: str | None) -> str:
    if given:
        return given
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (pass --commit)"
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmpose", type=Path, required=True, help="folder holding MMPose's mmpose/ sources")
    parser.add_argument(
        "--commit", default=None, help="MMPose commit to print (default: git rev-parse in --mmpose)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    mm = load_mmpose(args.mmpose)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(1)
    rows = [
        *heatmap_rows(mm, rng),
        *heatmap_decode_rows(mm, rng),
        *simcc_rows(mm, rng),
        *flip_rows(mm, rng),
        *geometry_rows(mm, rng),
        *oks_pck_rows(mm, rng),
        *loss_rows(mm, rng),
    ]
    print(f"MMPose commit {_commit(args.mmpose, args.commit)}, seed {args.seed}\n")
    print("| check | max abs difference | agrees | note |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r.check} | {r.diff:.2e} | {'yes' if r.agrees else 'no'} | {r.note} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
