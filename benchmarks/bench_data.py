"""Training-pipeline throughput: visattn.data vs a per-keypoint loop pipeline (SimpleBaseline style).

Both pipelines do the same work per sample on the synthetic set: JPEG decode, random flip / half-body /
scale / rotation, one affine warp to the crop, keypoint transform, ImageNet normalisation and codec
targets. The baseline is written here the way the authors' / SimpleBaseline code does it: the image is
converted to RGB and mirrored before the warp, the warp matrix comes from three points and
``cv2.getAffineTransform``, keypoints are transformed one at a time in Python, the tensor goes through
torchvision ``ToTensor`` + ``Normalize``, and targets are generated keypoint by keypoint with numpy.
Single process, one thread (``torch.set_num_threads(1)``, ``cv2.setNumThreads(1)``): samples/s per core.

Two tables:

1. per sample (``dataset[i]`` only, no batching): the loop baseline vs ``TopDownCocoDataset`` with the
   codec inside (per-sample ``codec.encode``, float32 images);
2. whole batches of 64, collation included (what a DataLoader worker does): the loop baseline +
   ``default_collate`` (its per-sample loop targets and per-sample normalisation, as the authors' code)
   vs ``TopDownCocoDataset(codec=...)`` + ``default_collate`` vs the fast path
   ``TopDownCocoDataset(codec=None, image_dtype="uint8")`` + ``TopDownCollate(codec)`` (targets encoded
   once per batch, images normalised batch-wise; same batch as the per-sample path).

The machine may be shared: every repeat runs all variants of a row back to back (interleaved) and the
best time of each is kept.

    python benchmarks/bench_data.py           # 600 images, 5 repeats
    python benchmarks/bench_data.py --quick   # 150 images, 2 repeats
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as TF
from torch.utils.data import default_collate

from visattn import COCO_KEYPOINTS
from visattn.codecs import HeatmapCodec, SimCCCodec
from visattn.data import TopDownCocoDataset, TopDownCollate, make_synthetic_coco

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


# --------------------------------------------------------------------------- loop baseline
def get_dir(src_point: list[float], rot_rad: float) -> list[float]:
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    return [src_point[0] * cs - src_point[1] * sn, src_point[0] * sn + src_point[1] * cs]


def get_3rd_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    direct = a - b
    return b + np.array([-direct[1], direct[0]], dtype=np.float32)


def get_affine_transform(center: np.ndarray, scale: np.ndarray, rot: float, output_size: list[int]) -> Any:
    src_w = scale[0]
    dst_w, dst_h = output_size
    rot_rad = np.pi * rot / 180
    src_dir = get_dir([0, src_w * -0.5], rot_rad)
    dst_dir = np.array([0, dst_w * -0.5], np.float32)
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center
    src[1, :] = center + src_dir
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    src[2:, :] = get_3rd_point(src[0, :], src[1, :])
    dst[2:, :] = get_3rd_point(dst[0, :], dst[1, :])
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def affine_transform(pt: np.ndarray, t: np.ndarray) -> np.ndarray:
    new_pt = np.array([pt[0], pt[1], 1.0]).T
    new_pt = np.dot(t, new_pt)
    return new_pt[:2]


class LoopPipeline:
    """SimpleBaseline / SimCC ``JointsDataset.__getitem__`` with per-keypoint loops."""

    def __init__(self, ann_file: Path, image_root: Path, input_size: tuple[int, int], target: str) -> None:
        data = json.loads(ann_file.read_text())
        files = {img["id"]: str(image_root / img["file_name"]) for img in data["images"]}
        self.db = []
        self.num_joints = 17
        self.image_size = np.array([input_size[1], input_size[0]])  # (w, h)
        self.aspect_ratio = input_size[1] / input_size[0]
        self.target = target
        self.heatmap_size = self.image_size // 4
        self.sigma = 6.0 if target == "simcc" else 2.0
        self.split = 2.0
        for ann in data["annotations"]:
            joints = np.zeros((17, 3), dtype=np.float64)
            joints_vis = np.zeros((17, 3), dtype=np.float64)
            for ipt in range(17):
                joints[ipt, 0] = ann["keypoints"][ipt * 3 + 0]
                joints[ipt, 1] = ann["keypoints"][ipt * 3 + 1]
                t_vis = min(ann["keypoints"][ipt * 3 + 2], 1)
                joints_vis[ipt, 0] = t_vis
                joints_vis[ipt, 1] = t_vis
            x, y, w, h = ann["bbox"]
            center, scale = self._box2cs(x, y, w, h)
            self.db.append({"image": files[ann["image_id"]], "center": center, "scale": scale})
            self.db[-1].update(joints_3d=joints, joints_3d_vis=joints_vis)
        self.flip_pairs = [[a, b] for a, b in COCO_KEYPOINTS.flip_pairs]
        self.upper_body_ids = list(COCO_KEYPOINTS.upper_body)

    def _box2cs(self, x: float, y: float, w: float, h: float) -> tuple[np.ndarray, np.ndarray]:
        center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
        if w > self.aspect_ratio * h:
            h = w * 1.0 / self.aspect_ratio
        elif w < self.aspect_ratio * h:
            w = h * self.aspect_ratio
        return center, np.array([w * 1.25, h * 1.25], dtype=np.float32)

    def half_body_transform(self, joints: np.ndarray, joints_vis: np.ndarray) -> tuple[Any, Any]:
        upper_joints, lower_joints = [], []
        for joint_id in range(self.num_joints):
            if joints_vis[joint_id][0] > 0:
                if joint_id in self.upper_body_ids:
                    upper_joints.append(joints[joint_id])
                else:
                    lower_joints.append(joints[joint_id])
        if np.random.randn() < 0.5 and len(upper_joints) > 2:  # noqa: NPY002 (as the authors' code)
            selected = upper_joints
        else:
            selected = lower_joints if len(lower_joints) > 2 else upper_joints
        if len(selected) < 2:
            return None, None
        sel = np.array(selected, dtype=np.float32)
        center = sel.mean(axis=0)[:2]
        left_top, right_bottom = np.amin(sel, axis=0), np.amax(sel, axis=0)
        w, h = right_bottom[0] - left_top[0], right_bottom[1] - left_top[1]
        if w > self.aspect_ratio * h:
            h = w * 1.0 / self.aspect_ratio
        elif w < self.aspect_ratio * h:
            w = h * self.aspect_ratio
        return center, np.array([w * 1.5, h * 1.5], dtype=np.float32)

    def fliplr_joints(self, joints: np.ndarray, joints_vis: np.ndarray, width: int) -> tuple[Any, Any]:
        joints[:, 0] = width - joints[:, 0] - 1
        for pair in self.flip_pairs:
            joints[pair[0], :], joints[pair[1], :] = joints[pair[1], :], joints[pair[0], :].copy()
            joints_vis[pair[0], :], joints_vis[pair[1], :] = (
                joints_vis[pair[1], :],
                joints_vis[pair[0], :].copy(),
            )
        return joints * joints_vis, joints_vis

    def adjust_target_weight(
        self, joint: np.ndarray, target_weight: np.ndarray, tmp_size: float
    ) -> np.ndarray:
        mu_x, mu_y = joint[0], joint[1]
        ul = [int(mu_x - tmp_size), int(mu_y - tmp_size)]
        br = [int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1)]
        if ul[0] >= self.image_size[0] or ul[1] >= self.image_size[1] or br[0] < 0 or br[1] < 0:
            target_weight = np.zeros_like(target_weight)
        return target_weight

    def generate_simcc(self, joints: np.ndarray, joints_vis: np.ndarray) -> tuple[Any, ...]:
        target_weight = np.ones((self.num_joints, 1), dtype=np.float32)
        target_weight[:, 0] = joints_vis[:, 0]
        w_bins, h_bins = int(self.image_size[0] * self.split), int(self.image_size[1] * self.split)
        target_x = np.zeros((self.num_joints, w_bins), dtype=np.float32)
        target_y = np.zeros((self.num_joints, h_bins), dtype=np.float32)
        tmp_size = self.sigma * 3
        for joint_id in range(self.num_joints):
            target_weight[joint_id] = self.adjust_target_weight(
                joints[joint_id], target_weight[joint_id], tmp_size
            )
            if target_weight[joint_id] == 0:
                continue
            mu_x = joints[joint_id][0] * self.split
            mu_y = joints[joint_id][1] * self.split
            x = np.arange(0, w_bins, 1, np.float32)
            y = np.arange(0, h_bins, 1, np.float32)
            if target_weight[joint_id] > 0.5:
                norm = self.sigma * np.sqrt(np.pi * 2)
                target_x[joint_id] = np.exp(-((x - mu_x) ** 2) / (2 * self.sigma**2)) / norm
                target_y[joint_id] = np.exp(-((y - mu_y) ** 2) / (2 * self.sigma**2)) / norm
        return target_x, target_y, target_weight

    def generate_heatmap(self, joints: np.ndarray, joints_vis: np.ndarray) -> tuple[Any, ...]:
        target_weight = np.ones((self.num_joints, 1), dtype=np.float32)
        target_weight[:, 0] = joints_vis[:, 0]
        hw, hh = int(self.heatmap_size[0]), int(self.heatmap_size[1])
        target = np.zeros((self.num_joints, hh, hw), dtype=np.float32)
        tmp_size = self.sigma * 3
        for joint_id in range(self.num_joints):
            feat_stride = self.image_size / self.heatmap_size
            mu_x = int(joints[joint_id][0] / feat_stride[0] + 0.5)
            mu_y = int(joints[joint_id][1] / feat_stride[1] + 0.5)
            ul = [int(mu_x - tmp_size), int(mu_y - tmp_size)]
            br = [int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1)]
            if ul[0] >= hw or ul[1] >= hh or br[0] < 0 or br[1] < 0:
                target_weight[joint_id] = 0
                continue
            size = 2 * tmp_size + 1
            x = np.arange(0, size, 1, np.float32)
            y = x[:, np.newaxis]
            x0 = y0 = size // 2
            g = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * self.sigma**2))
            g_x = max(0, -ul[0]), min(br[0], hw) - ul[0]
            g_y = max(0, -ul[1]), min(br[1], hh) - ul[1]
            img_x = max(0, ul[0]), min(br[0], hw)
            img_y = max(0, ul[1]), min(br[1], hh)
            if target_weight[joint_id] > 0.5:
                target[joint_id][img_y[0] : img_y[1], img_x[0] : img_x[1]] = g[
                    int(g_y[0]) : int(g_y[1]), int(g_x[0]) : int(g_x[1])
                ]
        return target, target_weight

    def __len__(self) -> int:
        return len(self.db)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        rec = self.db[idx]
        data_numpy = cv2.imread(rec["image"], cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        data_numpy = cv2.cvtColor(data_numpy, cv2.COLOR_BGR2RGB)
        joints = rec["joints_3d"].copy()
        joints_vis = rec["joints_3d_vis"].copy()
        c, s = rec["center"].copy(), rec["scale"].copy()
        r = 0.0
        if np.sum(joints_vis[:, 0]) > 8 and np.random.rand() < 0.3:  # noqa: NPY002 (as the authors' code)
            c_half, s_half = self.half_body_transform(joints, joints_vis)
            if c_half is not None:
                c, s = c_half, s_half
        sf, rf = 0.3, 40
        s = s * np.clip(np.random.randn() * sf + 1, 1 - sf, 1 + sf)  # noqa: NPY002 (as the authors' code)
        r = float(np.clip(np.random.randn() * rf, -rf * 2, rf * 2)) if random.random() <= 0.6 else 0.0  # noqa: NPY002 (as the authors' code)
        if random.random() <= 0.5:
            data_numpy = data_numpy[:, ::-1, :]
            joints, joints_vis = self.fliplr_joints(joints, joints_vis, data_numpy.shape[1])
            c[0] = data_numpy.shape[1] - c[0] - 1
        trans = get_affine_transform(c, s, r, [int(self.image_size[0]), int(self.image_size[1])])
        size = (int(self.image_size[0]), int(self.image_size[1]))
        warped = cv2.warpAffine(np.ascontiguousarray(data_numpy), trans, size, flags=cv2.INTER_LINEAR)
        image = TF.normalize(TF.to_tensor(warped), MEAN, STD)
        for i in range(self.num_joints):
            if joints_vis[i, 0] > 0.0:
                joints[i, 0:2] = affine_transform(joints[i, 0:2], trans)
        out = {"image": image, "keypoints": torch.from_numpy(joints[:, :2])}
        if self.target == "none":
            out["weights"] = torch.from_numpy(joints_vis[:, 0].astype(np.float32))
        elif self.target == "simcc":
            tx, ty, tw = self.generate_simcc(joints, joints_vis)
            out.update(
                x_labels=torch.from_numpy(tx), y_labels=torch.from_numpy(ty), weights=torch.from_numpy(tw)
            )
        else:
            hm, tw = self.generate_heatmap(joints, joints_vis)
            out.update(heatmaps=torch.from_numpy(hm), weights=torch.from_numpy(tw))
        return out


# --------------------------------------------------------------------------- timing
BATCH = 64


def throughput(get: Callable[[int], Any], n: int, repeats: int) -> float:
    for i in range(min(n, 20)):  # warm-up (page cache, allocator)
        get(i)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            get(i)
        best = min(best, time.perf_counter() - start)
    return n / best


def interleaved(variants: dict[str, Callable[[], Any]], n: int, repeats: int) -> dict[str, float]:
    """samples/s of each variant (one call processes ``n`` samples); best of ``repeats``, interleaved."""
    best = dict.fromkeys(variants, math.inf)
    for _ in range(repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: n / t for name, t in best.items()}


def per_sample(get: Callable[[int], Any], n: int) -> Callable[[], None]:
    def run() -> None:
        for i in range(n):
            get(i)

    return run


def batched(get: Callable[[int], Any], collate: Callable[[list[Any]], Any], n: int) -> Callable[[], None]:
    def run() -> None:
        for start in range(0, n, BATCH):
            collate([get(i) for i in range(start, min(start + BATCH, n))])

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="150 images, 2 repeats")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    num_images = args.images or (150 if args.quick else 600)
    repeats = args.repeats or (2 if args.quick else 5)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    np.random.seed(0)  # noqa: NPY002 (as the authors' code)
    random.seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ann = make_synthetic_coco(tmp, num_images, seed=0)
        gen_s = time.perf_counter() - t0
        root = Path(tmp) / "images"
        files = sorted(str(p) for p in root.glob("*.jpg"))
        decode = throughput(lambda i: cv2.imread(files[i % len(files)]), num_images, repeats)
        rows = []
        batch_rows = []
        encode_rows = []
        configs = [
            ("SimCC 256x192", (256, 192), "simcc", SimCCCodec((256, 192), sigma=6.0)),
            ("heatmap 256x192 (64x48)", (256, 192), "heatmap", HeatmapCodec((256, 192), (64, 48), sigma=2.0)),
            ("SimCC 64x48 (demo size)", (64, 48), "simcc", SimCCCodec((64, 48), sigma=6.0)),
            ("no targets 256x192 (codec=None)", (256, 192), "none", None),
        ]
        for name, size, target, codec in configs:  # type: ignore[assignment]
            ours = TopDownCocoDataset(ann, root, input_size=size, codec=codec, train=True)
            fast = TopDownCocoDataset(ann, root, input_size=size, train=True, image_dtype="uint8")
            loop = LoopPipeline(ann, root, size, target)
            n = len(ours)
            for i in range(min(n, 20)):  # warm-up (page cache, allocator)
                ours[i], fast[i], loop[i]
            one = interleaved(
                {"loop": per_sample(loop.__getitem__, n), "ours": per_sample(ours.__getitem__, n)}, n, repeats
            )
            rows.append((name, n, one["loop"], one["ours"]))
            many = interleaved(
                {
                    "loop": batched(loop.__getitem__, default_collate, n),
                    "ours": batched(ours.__getitem__, default_collate, n),
                    "fast": batched(fast.__getitem__, TopDownCollate(codec), n),
                },
                n,
                repeats,
            )
            batch_rows.append((name, n, many["loop"], many["ours"], many["fast"]))
            if codec is not None:  # the target step alone, per sample and per batch of 64
                kp = torch.rand(17, 2, dtype=torch.float64) * torch.tensor([size[1], size[0]])
                kp32 = kp.float()
                joints, vis = kp.numpy(), np.ones((17, 3))
                make = loop.generate_simcc if target == "simcc" else loop.generate_heatmap
                fl = torch.full((17,), 2)
                kpb, flb = kp32.expand(BATCH, 17, 2).contiguous(), fl.expand(BATCH, 17).contiguous()
                enc_us = 1e6 / throughput(lambda i, c=codec, k=kp32, f=fl: c.encode(k, f), 300, repeats)
                loop_us = 1e6 / throughput(lambda i, m=make, j=joints, v=vis: m(j, v), 300, repeats)
                batch_us = (
                    1e6 / throughput(lambda i, c=codec, k=kpb, f=flb: c.encode(k, f), 20, repeats) / BATCH
                )
                encode_rows.append((name, loop_us, enc_us, batch_us))

    print(f"synthetic set: {num_images} images 240x320 generated in {gen_s:.2f} s (1 process)")
    print(f"JPEG decode alone (cv2.imread): {decode:.0f} images/s per core; best of {repeats}, interleaved\n")
    print("Per sample (`dataset[i]`, no batching):\n")
    print(
        "| pipeline (train, decode + augment + crop + targets) | samples | loop baseline (samples/s) "
        "| visattn.data (samples/s) | speed-up |"
    )
    print("|---|---|---|---|---|")
    for name, n, slow, ours_s in rows:
        print(f"| {name} | {n} | {slow:.0f} | {ours_s:.0f} | {ours_s / slow:.2f}x |")
    print(f"\nWhole batches of {BATCH}, collation included (samples/s per core):\n")
    print(
        "| pipeline | samples | loop + default_collate | visattn per-sample codec + default_collate "
        "| speed-up | visattn fast path: uint8 + TopDownCollate(codec) | speed-up |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, n, slow, ours_s, fast_s in batch_rows:
        print(
            f"| {name} | {n} | {slow:.0f} | {ours_s:.0f} | {ours_s / slow:.2f}x | {fast_s:.0f} "
            f"| **{fast_s / slow:.2f}x** |"
        )
    print(
        "\n| target step alone | per-keypoint loop (us/sample) | codec.encode per sample (us) | ratio "
        f"| codec.encode batch of {BATCH} (us/sample) | ratio |"
    )
    print("|---|---|---|---|---|---|")
    for name, loop_us, enc_us, batch_us in encode_rows:
        print(
            f"| {name} | {loop_us:.0f} | {enc_us:.0f} | {loop_us / enc_us:.2f}x | {batch_us:.1f} "
            f"| {loop_us / batch_us:.1f}x |"
        )


if __name__ == "__main__":
    main()
