"""Vectorised visattn losses/codec vs the authors' per-keypoint Python loops.

Measures forward + backward (eager) at COCO sizes: SimCC KL (B=64, K=17, Wx=384, Hy=512), heatmap MSE
(B=64, K=17, 64x48), and SimCC target encoding for a batch of 64 against a per-keypoint loop. One
process, warm-up, median of N. Prints a markdown table.

Usage:
    python benchmarks/bench_losses.py [--quick] [--repeats N] [--threads T]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from visattn.codecs import simcc_encode
from visattn.losses import heatmap_mse_loss, simcc_kl_loss

B, K, WX, HY, HF, WF = 64, 17, 384, 512, 64, 48
INPUT_SIZE = (256, 192)


class LoopKLDiscretLoss(nn.Module):
    """The authors' SimCC loss: a Python loop over keypoints with per-keypoint KLDivLoss calls."""

    def __init__(self) -> None:
        super().__init__()
        self.log_softmax = nn.LogSoftmax(dim=1)
        self.kl = nn.KLDivLoss(reduction="none")

    def criterion(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.mean(self.kl(self.log_softmax(logits), labels), dim=1)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor, w: torch.Tensor
    ) -> torch.Tensor:
        num_keypoints = x.size(1)
        loss = torch.zeros((), device=x.device)
        for k in range(num_keypoints):
            weight = w[:, k]
            loss = loss + self.criterion(x[:, k], tx[:, k]).mul(weight).mean()
            loss = loss + self.criterion(y[:, k], ty[:, k]).mul(weight).mean()
        return loss / num_keypoints


class LoopJointsMSELoss(nn.Module):
    """SimpleBaseline's JointsMSELoss(use_target_weight=True): loop over keypoints, MSELoss per keypoint."""

    def __init__(self) -> None:
        super().__init__()
        self.criterion = nn.MSELoss(reduction="mean")

    def forward(self, output: torch.Tensor, target: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        batch, num_keypoints = output.shape[:2]
        preds = output.reshape(batch, num_keypoints, -1).split(1, 1)
        gts = target.reshape(batch, num_keypoints, -1).split(1, 1)
        loss = torch.zeros((), device=output.device)
        for k in range(num_keypoints):
            pred, gt = preds[k].squeeze(1), gts[k].squeeze(1)
            weight = w[:, k : k + 1]
            loss = loss + 0.5 * self.criterion(pred.mul(weight), gt.mul(weight))
        return loss / num_keypoints


def loop_simcc_encode(
    keypoints: torch.Tensor, flags: torch.Tensor, sigma: float = 6.0, ratio: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-keypoint target generation as in the authors' dataset (torch ops, one keypoint at a time)."""
    batch, num_keypoints = flags.shape
    tx = torch.zeros(batch, num_keypoints, WX)
    ty = torch.zeros(batch, num_keypoints, HY)
    weights = torch.zeros(batch, num_keypoints)
    xs = torch.arange(WX, dtype=torch.float32)
    ys = torch.arange(HY, dtype=torch.float32)
    norm = sigma * math.sqrt(2 * math.pi)
    for b in range(batch):
        for k in range(num_keypoints):
            if flags[b, k] == 0:
                continue
            mx, my = float(keypoints[b, k, 0]) * ratio, float(keypoints[b, k, 1]) * ratio
            if mx + 3 * sigma < 0 or mx - 3 * sigma > WX - 1 or my + 3 * sigma < 0 or my - 3 * sigma > HY - 1:
                continue
            weights[b, k] = 1.0
            tx[b, k] = torch.exp(-((xs - mx) ** 2) / (2 * sigma**2)) / norm
            ty[b, k] = torch.exp(-((ys - my) ** 2) / (2 * sigma**2)) / norm
    return tx, ty, weights


def paired_ms(
    slow: Callable[[], object], fast: Callable[[], object], repeats: int, warmup: int
) -> tuple[float, float, float]:
    """Median times (ms) of ``slow`` and ``fast`` and the median of per-pair ratios.

    The two variants run alternately, so load from other processes hits both alike.
    """
    for _ in range(warmup):
        slow()
        fast()
    t_slow, t_fast, ratios = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        slow()
        mid = time.perf_counter()
        fast()
        end = time.perf_counter()
        t_slow.append(mid - start)
        t_fast.append(end - mid)
        ratios.append((mid - start) / (end - mid))
    return statistics.median(t_slow) * 1e3, statistics.median(t_fast) * 1e3, statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats (smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per variant (default 30)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (5 if args.quick else 30)
    warmup = 2 if args.quick else 5
    torch.manual_seed(0)

    # SimCC KL -----------------------------------------------------------------------------------------
    x = torch.randn(B, K, WX, requires_grad=True)
    y = torch.randn(B, K, HY, requires_grad=True)
    flags = torch.randint(0, 3, (B, K))
    keypoints = torch.rand(B, K, 2) * torch.tensor([192.0, 256.0])
    tx, ty, w = simcc_encode(keypoints, flags, INPUT_SIZE, sigma=6.0)
    loop_kl = LoopKLDiscretLoss()
    torch.testing.assert_close(loop_kl(x, y, tx, ty, w), simcc_kl_loss(x, y, tx, ty, w), atol=1e-5, rtol=1e-5)

    def kl_vec() -> None:
        x.grad = y.grad = None
        simcc_kl_loss(x, y, tx, ty, w).backward()

    def kl_loop() -> None:
        x.grad = y.grad = None
        loop_kl(x, y, tx, ty, w).backward()

    # heatmap MSE --------------------------------------------------------------------------------------
    hp = torch.randn(B, K, HF, WF, requires_grad=True)
    ht = torch.rand(B, K, HF, WF)
    loop_mse = LoopJointsMSELoss()
    torch.testing.assert_close(loop_mse(hp, ht, w), heatmap_mse_loss(hp, ht, w), atol=1e-5, rtol=1e-5)

    def mse_vec() -> None:
        hp.grad = None
        heatmap_mse_loss(hp, ht, w).backward()

    def mse_loop() -> None:
        hp.grad = None
        loop_mse(hp, ht, w).backward()

    # codec encode -------------------------------------------------------------------------------------
    ref = loop_simcc_encode(keypoints, flags)
    new = simcc_encode(keypoints, flags, INPUT_SIZE)
    for a, b in zip(ref, new):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)

    rows = [
        ("SimCC KL loss fwd+bwd (B=64, K=17, 384/512 bins)", kl_loop, kl_vec, 3.5),
        ("heatmap MSE loss fwd+bwd (B=64, K=17, 64x48)", mse_loop, mse_vec, 1.5),
        (
            "SimCC encode (B=64, K=17)",
            lambda: loop_simcc_encode(keypoints, flags),
            lambda: simcc_encode(keypoints, flags, INPUT_SIZE),
            None,
        ),
    ]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, eager CPU, "
        f"median of {repeats} pairs\n"
    )
    print("| case | loop (ms) | vectorised (ms) | speed-up | target |")
    print("|---|---:|---:|---:|---:|")
    for name, slow, fast, target in rows:
        n = max(3, repeats // 4) if target is None else repeats
        ms_slow, ms_fast, ratio = paired_ms(slow, fast, n, 1 if target is None else warmup)
        goal = "-" if target is None else f">= {target:.1f}x {'ok' if ratio >= target else 'MISSED'}"
        print(f"| {name} | {ms_slow:.2f} | {ms_fast:.2f} | {ratio:.1f}x | {goal} |")


if __name__ == "__main__":
    main()
