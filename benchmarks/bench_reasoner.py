"""Benchmark the visibility-masked reasoner against a loop-style port of the authors' modules.

Everything runs in one process on CPU at the paper's sizes (K=17, D=3072, embed 512, depth 3, 2 heads,
MLP 1024, SimCC head for a 256x192 crop at split ratio 2):

* ``visattn``: :class:`visattn.VisibilityMaskedReasoner` with the authors' parameterisation
  (``shared_qkv=True, norm_first=False``) + bias-free :class:`visattn.heads.SimCCHead`, the vectorised
  losses from :mod:`visattn.losses`;
* ``loop``: the authors' released structure: kernel-1 ``Conv1d`` VisNet + sigmoid,
  the mask built on the host through a ``.cpu().numpy()`` round trip, post-norm blocks whose shared
  ``Dh x Dh`` Q/K/V matrices are applied with a Python loop over heads, and losses that loop over
  keypoints in Python.

Measured: a training step (forward + losses + backward) at batch 64, and forward latency at batch 1
(eval, ``torch.inference_mode``). Each time is the lowest median of a few interleaved
``torch.utils.benchmark`` rounds, which keeps the comparison fair on a shared machine. Achieved GFLOP/s
count the matmul FLOPs analytically (training step = 3 x forward) and are compared with the machine's
fp32 ``torch.mm`` rate.

Run: ``python benchmarks/bench_reasoner.py [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import platform
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.benchmark import Timer

from visattn import SimCCHead, VisibilityMaskedReasoner
from visattn.losses import simcc_kl_loss, visibility_bce_loss

K, D, E, DEPTH, HEADS, FFN = 17, 3072, 512, 3, 2, 1024
INPUT_SIZE = (256, 192)
WX, HY = 384, 512
VIS_HIDDEN = (64, 32)


# ---------------------------------------------------------------------------------------------------------
# Loop-style baseline (the authors' code structure).


class LoopVisNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(D, VIS_HIDDEN[0], 1)
        self.conv2 = nn.Conv1d(VIS_HIDDEN[0], VIS_HIDDEN[1], 1)
        self.conv3 = nn.Conv1d(VIS_HIDDEN[1], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)  # (B, D, K)
        h = F.relu(self.conv2(F.relu(self.conv1(h))))
        return torch.sigmoid(self.conv3(h))[:, 0]  # (B, K) probabilities


class LoopAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head_dim = E // HEADS
        self.query_matrix = nn.Linear(self.head_dim, self.head_dim, bias=False)
        self.key_matrix = nn.Linear(self.head_dim, self.head_dim, bias=False)
        self.value_matrix = nn.Linear(self.head_dim, self.head_dim, bias=False)
        self.out = nn.Linear(E, E)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = []
        for h in range(HEADS):
            chunk = x[..., h * self.head_dim : (h + 1) * self.head_dim]  # (B, K, Dh)
            q, k, v = self.query_matrix(chunk), self.key_matrix(chunk), self.value_matrix(chunk)
            scores = q @ k.transpose(1, 2) / math.sqrt(self.head_dim)  # (B, K, K)
            heads.append(torch.softmax(scores, dim=-1) @ v)
        return self.out(torch.cat(heads, dim=-1))  # (B, K, E)


class LoopBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = LoopAttention()
        self.norm1 = nn.LayerNorm(E)
        self.norm2 = nn.LayerNorm(E)
        self.feed_forward = nn.Sequential(nn.Linear(E, FFN), nn.SiLU(), nn.Linear(FFN, E))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attention(x))
        return self.norm2(x + self.feed_forward(x))


class LoopModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.visibility = LoopVisNet()
        self.embed = nn.Sequential(nn.Linear(D, E), nn.ReLU())
        self.layers = nn.ModuleList(LoopBlock() for _ in range(DEPTH))
        self.fc = nn.Linear(E, D)
        self.mlp_head_x = nn.Linear(D, WX, bias=False)
        self.mlp_head_y = nn.Linear(D, HY, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        prob = self.visibility(x.detach())
        host = prob.detach().cpu().numpy()  # the authors build the mask on the host
        mask = torch.from_numpy(np.where(host >= 0.5, 1.0, 0.01).astype(np.float32)).to(x.device)
        t = self.embed(x * mask[..., None])
        for layer in self.layers:
            t = layer(t)
        y = self.fc(t) + x
        return self.mlp_head_x(y), self.mlp_head_y(y), prob


def loop_kl_loss(
    x_logits: torch.Tensor, y_logits: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor, w: torch.Tensor
) -> torch.Tensor:
    loss = x_logits.new_zeros(())
    for k in range(x_logits.shape[1]):
        for logits, target in ((x_logits[:, k], tx[:, k]), (y_logits[:, k], ty[:, k])):
            kl = F.kl_div(F.log_softmax(logits, dim=1), target, reduction="none").mean(dim=1)
            loss = loss + (kl * w[:, k]).mean()
    return loss / x_logits.shape[1]


def loop_vis_loss(prob: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    target = (flags == 2).float()
    loss = prob.new_zeros(())
    for k in range(prob.shape[1]):
        loss = loss + F.binary_cross_entropy(prob[:, k], target[:, k])
    return loss / prob.shape[1]


# ---------------------------------------------------------------------------------------------------------


def forward_flops() -> float:
    """Matmul FLOPs of one sample's forward pass (reasoner + VisNet + SimCC head)."""
    dh = E // HEADS
    visnet = 2 * K * (D * VIS_HIDDEN[0] + VIS_HIDDEN[0] * VIS_HIDDEN[1] + VIS_HIDDEN[1])
    block = 2 * K * E * 3 * dh + 4 * K * K * E + 2 * K * E * E + 4 * K * E * FFN
    return float(visnet + 2 * (2 * K * D * E) + DEPTH * block + 2 * K * D * (WX + HY))


def median_seconds(fn: Callable[[], object], min_run_time: float) -> float:
    """Median seconds per call of ``fn`` (``torch.utils.benchmark`` blocked autorange)."""
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return float(timer.blocked_autorange(min_run_time=min_run_time).median)


def time_interleaved(
    fns: dict[str, Callable[[], object]], min_run_time: float, rounds: int, warmup: int
) -> dict[str, float]:
    """Best (lowest) median over ``rounds`` interleaved rounds: robust to other load on a shared CPU."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], median_seconds(fn, min_run_time))
    return best


def matmul_rate(min_run_time: float) -> float:
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    return 2 * n**3 / min(median_seconds(lambda: torch.mm(a, b), min_run_time) for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (noisier numbers)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    min_run_time, rounds, warmup = (0.5, 1, 1) if args.quick else (2.0, 3, 2)
    torch.manual_seed(0)

    reasoner = VisibilityMaskedReasoner(
        D, K, embed_dim=E, depth=DEPTH, num_heads=HEADS, mlp_ratio=FFN / E, norm_first=False, shared_qkv=True
    )
    head = SimCCHead(D, INPUT_SIZE, bias=False)
    ours = nn.ModuleDict({"reasoner": reasoner, "head": head})
    loop = LoopModel()

    def batch(n: int) -> tuple[torch.Tensor, ...]:
        tokens = torch.randn(n, K, D, requires_grad=True)
        tx = torch.softmax(torch.randn(n, K, WX), -1)
        ty = torch.softmax(torch.randn(n, K, HY), -1)
        return tokens, tx, ty, torch.ones(n, K), torch.randint(0, 3, (n, K))

    tokens, tx, ty, w, flags = batch(64)

    def step_ours(dtype: torch.dtype | None) -> Callable[[], None]:
        def run() -> None:
            ours.zero_grad(set_to_none=True)
            tokens.grad = None
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                out = reasoner(tokens)
                x_logits, y_logits = head(out.tokens)
                loss = simcc_kl_loss(x_logits, y_logits, tx, ty, w) + visibility_bce_loss(
                    out.vis_logits, flags
                )
            loss.backward()

        return run

    def step_loop() -> None:
        loop.zero_grad(set_to_none=True)
        tokens.grad = None
        x_logits, y_logits, prob = loop(tokens)
        (loop_kl_loss(x_logits, y_logits, tx, ty, w) + loop_vis_loss(prob, flags)).backward()

    one = torch.randn(1, K, D)

    def infer_ours() -> None:
        with torch.inference_mode():
            head(reasoner(one).tokens)

    def infer_loop() -> None:
        with torch.inference_mode():
            loop(one)

    peak = matmul_rate(min_run_time)
    train = time_interleaved(
        {"loop": step_loop, "fp32": step_ours(None), "bf16": step_ours(torch.bfloat16)},
        min_run_time,
        rounds,
        warmup,
    )
    t_loop, t_ours, t_bf16 = train["loop"], train["fp32"], train["bf16"]
    reasoner.eval()
    loop.eval()
    infer = time_interleaved({"loop": infer_loop, "fp32": infer_ours}, min_run_time, rounds, warmup * 5)
    l_loop, l_ours = infer["loop"], infer["fp32"]

    train_flops = 3 * 64 * forward_flops()
    infer_flops = forward_flops()

    def gflops(flops: float, seconds: float) -> str:
        rate = flops / seconds
        return f"{rate / 1e9:.1f} ({100 * rate / peak:.0f}%)"

    print(
        f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; fp32 torch.mm 2048^3: {peak / 1e9:.1f} GFLOP/s"
    )
    print(f"FLOPs per sample forward: {forward_flops() / 1e6:.0f} MFLOP (training step counted as 3x)\n")
    print("| case | variant | median time | speed-up vs loop fp32 | target | GFLOP/s (% of mm) |")
    print("|---|---|---|---|---|---|")
    rows = [
        ("train step, B=64", "loop baseline fp32", t_loop, t_loop, "", train_flops),
        ("train step, B=64", "visattn fp32 (shared_qkv, post-norm)", t_ours, t_loop, ">= 1.1x", train_flops),
        ("train step, B=64", "visattn bf16 autocast", t_bf16, t_loop, ">= 2x", train_flops),
        ("forward, B=1", "loop baseline fp32", l_loop, l_loop, "", infer_flops),
        ("forward, B=1", "visattn fp32 (shared_qkv, post-norm)", l_ours, l_loop, ">= 1.3x", infer_flops),
    ]
    for case, variant, seconds, base, target, flops in rows:
        unit = f"{seconds * 1e3:.1f} ms"
        print(
            f"| {case} | {variant} | {unit} | {base / seconds:.2f}x | {target} | {gflops(flops, seconds)} |"
        )


if __name__ == "__main__":
    main()
