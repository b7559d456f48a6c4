"""Edit-aware training inputs: what the sampler hands the network in the CLI's edits, not only Gaussian noise.

The zero-shot sampler (ALGORITHMS.md 4b) queries the network at x = P(estimate) + sigma z: the classical answer
projected onto the known data, plus noise. Its error is not only the noise: it is the estimate's own error, which
lives where the operator knows nothing (the detail inside superres's p x p patches, the chroma of colorize). A
denoiser trained on x0 + sigma eps alone takes that error for image content and keeps it: the model then adds little
to the classical answer (issue 16). Here a share of the training crops is instead

    x = x0 + lam (start(x0) - x0) + t eps,    target x0,

with start(x0) the CLI's own start of an edit of x0:
- superres by p in {2, 4, 8}: the p x p box average rounded to 8 bits (what a user hands over), upsampled with
  Lanczos-3 in PIL's convention (src/editing/resample.ts), made consistent with the means by the smooth cubic
  B-spline correction of src/editing/superres.ts (solved exactly, separably);
- colorize: the gray image of the photo's BT.601 luminance (src/editing/colorize.ts), lam = 1 (the sampler's start;
  a partly desaturated input would teach the model to saturate every photo).
lam = 1 for half of the superres crops (the first step) and uniform in [0, 1] for the rest (later steps, whose input
is the model's earlier answer: between the start and the photo). Either way the shift's RMS is capped at `scale` t:
the sampler's plans query the network at noise levels above the error left in its input, and a network that had to
expect a large structured error at low noise would stop trusting its input there (measured: with no cap, one-step
denoising fell 1.6 dB at sigma 0.05 in 1,400 steps). Pure tensor code, no files.
"""
import math
from functools import lru_cache
from typing import Optional

import torch

LUMA = (0.2989, 0.587, 0.114)
TASKS = ("superres-x2", "superres-x4", "superres-x8", "colorize")


def _weight(kernel: str, x: float) -> float:
    t = abs(x)
    if kernel == "bspline3":
        return (4 - 6 * t * t + 3 * t ** 3) / 6 if t < 1 else ((2 - t) ** 3 / 6 if t < 2 else 0.0)
    if t >= 3:
        return 0.0
    sinc = lambda v: 1.0 if v == 0 else math.sin(math.pi * v) / (math.pi * v)
    return sinc(t) * sinc(t / 3)


@lru_cache(maxsize=None)
def resample_matrix(kernel: str, n_in: int, n_out: int) -> torch.Tensor:
    """[n_out, n_in] float64: PIL's resize convention as in resample.ts (taps cut at the border, renormalised)."""
    scale = n_in / n_out
    fs = max(scale, 1.0)
    support = {"bspline3": 2, "lanczos3": 3}[kernel] * fs
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        w = [_weight(kernel, (j - centre + 0.5) / fs) for j in range(lo, hi)]
        s = sum(w) or 1.0
        for j, v in zip(range(lo, hi), w):
            m[i, j] = v / s
    return m


@lru_cache(maxsize=None)
def _superres_mats(n: int, p: int):
    """(box mean [n/p, n], Lanczos-3 up [n, n/p], B-spline up [n, n/p], (box mean @ B-spline up)^-1), float32."""
    box = torch.zeros(n // p, n, dtype=torch.float64)
    for i in range(n // p):
        box[i, i * p:(i + 1) * p] = 1.0 / p
    up = resample_matrix("lanczos3", n // p, n)
    bs = resample_matrix("bspline3", n // p, n)
    solve = torch.linalg.inv(box @ bs)
    return tuple(t.float() for t in (box, up, bs, solve))


def quantize(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] values rounded to the 256 levels of an 8-bit image."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def superres_start(x0: torch.Tensor, p: int) -> torch.Tensor:
    """The sampler's superres start for photos x0 [N, C, H, W] in [-1, 1] (H, W multiples of p): P(Lanczos-3(low))."""
    _, _, h, w = x0.shape
    bh, uh, sh, ih = (m.to(x0) for m in _superres_mats(h, p))     # the crops' device and dtype (a GPU run's too)
    bw, uw, sw, iw = (m.to(x0) for m in _superres_mats(w, p))
    low = quantize(bh @ x0 @ bw.T)
    est = uh @ low @ uw.T
    resid = low - bh @ est @ bw.T
    return est + sh @ (ih @ resid @ iw.T) @ sw.T


def gray_start(x0: torch.Tensor) -> torch.Tensor:
    """The gray image of x0's luminance (colorize's start): w.x / sum(w) in every channel."""
    w = torch.tensor(LUMA, dtype=x0.dtype, device=x0.device).view(1, 3, 1, 1)
    lum = (x0 * w).sum(1, keepdim=True) / w.sum()
    return lum.expand_as(x0)


def edit_shift(x0: torch.Tensor, t: torch.Tensor, mix: float, below: float, scale: float = 1.0,
               allowed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """lam (start(x0) - x0) for a share `mix` of the crops whose t is under `below` (and `allowed`, a bool [N], where
    given; zero elsewhere), each with a task drawn uniformly from TASKS, its RMS at most `scale` t. x0 [N, 3, H, W] in
    [-1, 1] with H, W multiples of 8; t [N]. The draws come from torch's global generator (a run's saved RNG state)."""
    n = x0.shape[0]
    shift = torch.zeros_like(x0)
    if mix <= 0:
        return shift
    u = torch.rand(n)
    task = torch.randint(len(TASKS), (n,))
    lam = torch.where(torch.rand(n) < 0.5, torch.ones(n), torch.rand(n))
    chosen = (u < mix) & (t.detach().cpu() < below)
    if allowed is not None:
        chosen &= allowed.detach().cpu()
    for k, name in enumerate(TASKS):
        sel = torch.nonzero(chosen & (task == k)).flatten()
        if len(sel) == 0:
            continue
        at = sel.to(x0.device)
        xs = x0[at].float()
        if name == "colorize":
            d = gray_start(xs) - xs
        else:
            d = (superres_start(xs, int(name.split("x")[1])) - xs) * lam[sel].to(x0.device).view(-1, 1, 1, 1)
        rms = d.pow(2).flatten(1).mean(1).sqrt()
        cap = scale * t[sel.to(t.device)].to(x0.device).float() / rms.clamp(min=1e-12)
        shift[at] = (d * cap.clamp(max=1.0).view(-1, 1, 1, 1)).to(x0.dtype)
    return shift
