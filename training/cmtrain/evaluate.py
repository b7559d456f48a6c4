"""Evaluate a `cm` model on 64x64 crops: 4x super-resolution and inpainting of a centred hole.

  python3 -m cmtrain.evaluate --checkpoint runs/default/last.pt --out results/eval_kodak24.csv
  python3 -m cmtrain.evaluate --checkpoint runs/default/last.pt --data ../../shared/data/eval/kodak24 \
      --crops 240 --plans '{"1":[0,39],"2":[0,22,39]}'

Tasks (ALGORITHMS.md section 4, the paper's Algorithm 4, the same sampler as the CLI):
- superres x4: the 64x64 crop box-averaged to 16x16 and rounded to uint8 (what a user would hand over); the
  reference y is its nearest upsampling, P(x) = x - patchmean(x) + patchmean(y). PSNR over the whole crop,
  next to bicubic upsampling (PIL) of the same 16x16 input.
- inpaint: a centred 24x24 hole, P(x) = m y + (1 - m) x (m = 1 on kept pixels). PSNR inside the hole only,
  next to a harmonic (Laplace) fill of the hole from its border.
Sampling: y0 = the known part of y; x = y0 + sigma_0 z_0; per step x0 = P(clamp(f(x, sigma_i))), then
x = x0 + sqrt(sigma_{i+1}^2 - eps^2) z_{i+1}; the output is x0 projected into [-1, 1] keeping the known data
(the CLI's projectInRange), rounded to uint8. z_i depends only on (seed, i), so plans that share a prefix share
their first steps exactly (the plan search reuses them). PSNR is per crop on uint8 (peak 255), averaged over crops.
Crops: `--crops` 64x64 crops at full scale, spread evenly over the photos, positions from `--seed`.
"""
import argparse
import csv
import json
import math
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .consistency import RHO, SIGMA_MAX, SIGMA_MIN
from .data import is_validation, list_photos

GRID = 40
HOLE = 24
SCALE = 4
SIZE = 64
HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_DATA = next((d for d in (os.path.join(HERE, "..", "..", "..", "shared", "data"),
                                os.path.join(HERE, "..", "..", "shared", "data")) if os.path.isdir(d)),
                   os.path.join(HERE, "..", "..", "..", "shared", "data"))
EVAL_DATA = os.path.join(SHARED_DATA, "eval", "kodak24")
TRAIN_DATA = os.path.join(SHARED_DATA, "train")
DEFAULT_EVAL_PLANS = {"1": [0, 39], "2": [0, 22, 39]}


def karras_sigma(i: float, n: int = GRID) -> float:
    a, b = SIGMA_MAX ** (1 / RHO), SIGMA_MIN ** (1 / RHO)
    return (a + i / (n - 1) * (b - a)) ** RHO


# ---------------------------------------------------------------- data
def load_rgb(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def validation_paths(root: str = TRAIN_DATA) -> List[str]:
    """The held-out photos of the training folder: exactly those of cmtrain.data (hash of the relative path)."""
    return [os.path.join(root, p) for p in list_photos(root) if is_validation(p)]


def folder_paths(root: str) -> List[str]:
    return [os.path.join(root, p) for p in list_photos(root)]


def random_crops(images: Sequence[np.ndarray], n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """n crops [n, size, size, 3] uint8; crop i comes from photo i mod len(images), at a seeded position."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        img = images[i % len(images)]
        y = rng.integers(img.shape[0] - size + 1)
        x = rng.integers(img.shape[1] - size + 1)
        out[i] = img[y:y + size, x:x + size]
    return out


def to_tensor(u8: np.ndarray) -> torch.Tensor:
    """uint8 (or float 0..255) [N,H,W,3] -> float32 [N,3,H,W] in [-1, 1]"""
    return torch.from_numpy(u8.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float [N,3,H,W] in [-1, 1] -> uint8 [N,H,W,3] (round((x+1)*127.5), clamped)"""
    v = torch.round((x.double() + 1.0) * 127.5).clamp(0, 255)
    return v.numpy().astype(np.uint8).transpose(0, 2, 3, 1)


def box_down(u8: np.ndarray, p: int = SCALE) -> np.ndarray:
    """Mean of every p x p patch, rounded to uint8: [N,H/p,W/p,3]."""
    n, h, w, c = u8.shape
    m = u8.reshape(n, h // p, p, w // p, p, c).astype(np.float64).mean(axis=(2, 4))
    return np.clip(np.round(m), 0, 255).astype(np.uint8)


def bicubic_up(low: np.ndarray, p: int = SCALE) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(im).resize((im.shape[1] * p, im.shape[0] * p), Image.BICUBIC))
                     for im in low])


def centre_hole(size: int = SIZE, hole: int = HOLE) -> np.ndarray:
    """bool [size, size], True inside the centred hole (the pixels to generate)."""
    m = np.zeros((size, size), dtype=bool)
    a = (size - hole) // 2
    m[a:a + hole, a:a + hole] = True
    return m


def harmonic_fill(img: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Fill the True pixels of `hole` in img [N,H,W,C] (any float/uint8) with the solution of Laplace's equation
    (4-neighbour discrete Laplacian = 0 inside, the known pixels as Dirichlet data; at the image border only the
    neighbours inside the image count). Returns float64 [N,H,W,C]; known pixels unchanged."""
    h, w = hole.shape
    idx = -np.ones((h, w), dtype=np.int64)
    ys, xs = np.nonzero(hole)
    idx[ys, xs] = np.arange(len(ys))
    out = img.astype(np.float64).copy()
    n = len(ys)
    if n == 0:
        return out
    a = np.zeros((n, n))     # dense: a 24x24 hole is 576 unknowns (no scipy on the project machine)
    rhs_terms = []     # (unknown k, known y, known x)
    for k, (y, x) in enumerate(zip(ys, xs)):
        deg = 0
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            yy, xx = y + dy, x + dx
            if 0 <= yy < h and 0 <= xx < w:
                deg += 1
                if hole[yy, xx]:
                    a[k, idx[yy, xx]] = -1.0
                else:
                    rhs_terms.append((k, yy, xx))
        a[k, k] = float(deg)
    nimg, _, _, c = out.shape
    b = np.zeros((n, nimg * c))
    flat = out.transpose(1, 2, 0, 3).reshape(h, w, nimg * c)
    for k, yy, xx in rhs_terms:
        b[k] += flat[yy, xx]
    sol = np.linalg.solve(a, b)
    flat[ys, xs] = sol
    return flat.reshape(h, w, nimg, c).transpose(2, 0, 1, 3).copy()


def psnr(a: np.ndarray, b: np.ndarray, region: Optional[np.ndarray] = None) -> np.ndarray:
    """Per-image PSNR (dB, peak 255) of uint8 images [N,H,W,C], over `region` [H,W] when given."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if region is not None:
        d = d[:, region]
    mse = d.reshape(len(a), -1).mean(1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


# ---------------------------------------------------------------- operators (closed forms, ALGORITHMS.md table)
def patchmean_up(x: torch.Tensor, p: int) -> torch.Tensor:
    n, c, h, w = x.shape
    m = x.reshape(n, c, h // p, p, w // p, p).mean(dim=(3, 5), keepdim=True)
    return m.expand(n, c, h // p, p, w // p, p).reshape(n, c, h, w)


class SuperresOp:
    """y: the nearest upsampling of the low-res input [N,3,H,W]."""

    def __init__(self, y: torch.Tensor, p: int = SCALE):
        self.p = p
        self.keep = patchmean_up(y, p)
        self.start = self.keep

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x - patchmean_up(x, self.p) + self.keep

    def project_in_range(self, x: torch.Tensor, iters: int = 60) -> torch.Tensor:
        """Per patch: the Euclidean projection onto {v in [-1,1]^(p*p): mean v = mean y}: v = clamp(x + lambda),
        lambda by bisection (the CLI's projectBlockInRange)."""
        p, (n, c, h, w) = self.p, x.shape
        v = x.double().reshape(n, c, h // p, p, w // p, p).permute(0, 1, 2, 4, 3, 5)
        v = v.reshape(n, c, h // p, w // p, p * p)
        t = self.keep.double().reshape(n, c, h // p, p, w // p, p)[:, :, :, 0, :, 0] * (p * p)
        lo = (-1 - v).min(-1).values
        hi = (1 - v).max(-1).values
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            below = (v + mid[..., None]).clamp(-1, 1).sum(-1) < t
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        out = (v + (0.5 * (lo + hi))[..., None]).clamp(-1, 1)
        out = out.reshape(n, c, h // p, w // p, p, p).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)
        return out.to(x.dtype)


class InpaintOp:
    """fill: bool/float [H,W] or [N,1,H,W], 1 where the model generates."""

    def __init__(self, y: torch.Tensor, fill):
        m = torch.as_tensor(fill, dtype=y.dtype)
        while m.dim() < 4:
            m = m[None]
        self.fill = m
        self.y = y
        self.start = (1 - m) * y

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return (1 - self.fill) * self.y + self.fill * x

    def project_in_range(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x.clamp(-1, 1))


class FreeOp:
    """No known data (unconditional generation): start from zero, no projection."""

    def __init__(self, zero: torch.Tensor):
        self.start = zero

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def project_in_range(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(-1, 1)


# ---------------------------------------------------------------- sampler
class Noise:
    """z_i for step i: standard normal, a function of (seed, i) and the shape only."""

    def __init__(self, shape, seed: int):
        self.shape, self.seed, self.cache = tuple(shape), seed, {}

    def __call__(self, i: int) -> torch.Tensor:
        if i not in self.cache:
            g = torch.Generator().manual_seed(self.seed * 1000 + i)
            self.cache[i] = torch.randn(self.shape, generator=g)
        return self.cache[i]


@torch.no_grad()
def denoise(model, x: torch.Tensor, sigma: float, batch: int = 64) -> torch.Tensor:
    outs = []
    for i in range(0, x.shape[0], batch):
        xb = x[i:i + batch]
        outs.append(model(xb, torch.full((xb.shape[0],), sigma, dtype=torch.float32)))
    return torch.cat(outs)


@torch.no_grad()
def sample(model, op, ts: Sequence[int], noise: Noise, cache: Optional[dict] = None, batch: int = 64,
           grid: int = GRID, start: str = "known", eta: float = 1.0) -> torch.Tensor:
    """The editing sampler with the plan ts (grid indices, ending at grid-1); returns the projected x0 of the last
    step (not yet projected into range). start "known": x = (known part) + sigma_0 z_0 (Algorithm 4); "estimate":
    x = P(op.estimate) + sigma_0 z_0 (ALGORITHMS.md 4b warm start). Between steps x = x0 + eta sqrt(sigma^2 - eps^2) z.
    start "known" with eta 1 is the paper's sampler. `cache` (a dict kept per operator and noise) memoises x0 per
    plan prefix."""
    sig = [karras_sigma(t, grid) for t in ts]
    x0 = None
    for i in range(len(ts) - 1):
        key = (start, eta, tuple(ts[:i + 1]))
        if cache is not None and key in cache:
            x0 = cache[key]
            continue
        if i == 0:
            x = (op.project(op.estimate) if start == "estimate" else op.start) + sig[0] * noise(0)
        else:
            x = x0 + eta * math.sqrt(max(0.0, sig[i] ** 2 - SIGMA_MIN ** 2)) * noise(i)
        x0 = op.project(denoise(model, x, sig[i], batch).clamp(-1, 1))
        if cache is not None:
            cache[key] = x0
    return x0


def edit_uint8(model, op, ts, noise, cache=None, batch=64, start="known", eta=1.0) -> np.ndarray:
    return to_uint8(op.project_in_range(sample(model, op, ts, noise, cache, batch, start=start, eta=eta)))


@torch.no_grad()
def generate(model, ts: Sequence[int], n: int, seed: int, size: int = SIZE, grid: int = GRID) -> np.ndarray:
    """Unconditional multistep sampling (Algorithm 1); uint8 [n,size,size,3]."""
    noise = Noise((n, 3, size, size), seed)
    return to_uint8(sample(model, FreeOp(torch.zeros(n, 3, size, size)), ts, noise, None, grid=grid).clamp(-1, 1))


def image_grid(u8: np.ndarray, cols: int = 8) -> Image.Image:
    n, h, w, c = u8.shape
    rows = math.ceil(n / cols)
    g = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i in range(n):
        g[(i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w] = u8[i]
    return Image.fromarray(g)


# ---------------------------------------------------------------- the two tasks
class Tasks:
    """Both tasks on one set of crops, with their inputs, baselines and per-task noise/prefix caches."""

    def __init__(self, crops: np.ndarray, seed: int = 0):
        self.crops = crops
        n = len(crops)
        self.low = box_down(crops, SCALE)
        up = np.repeat(np.repeat(self.low, SCALE, axis=1), SCALE, axis=2)
        self.sr = SuperresOp(to_tensor(up), SCALE)
        self.sr.estimate = to_tensor(bicubic_up(self.low, SCALE))
        self.hole = centre_hole(crops.shape[1], HOLE * crops.shape[1] // SIZE)   # 24x24 at 64x64, same share otherwise
        self.ip = InpaintOp(to_tensor(crops), torch.from_numpy(self.hole.astype(np.float32)))
        self.ip.estimate = to_tensor(harmonic_fill(crops, self.hole))   # float 0..255 -> [-1, 1]
        shape = (n, 3, crops.shape[1], crops.shape[2])
        # Separate noise streams per task, fixed by the seed.
        self.noise = {"superres": Noise(shape, 2 * seed + 1), "inpaint": Noise(shape, 2 * seed + 2)}
        self.cache = {"superres": {}, "inpaint": {}}

    def baselines(self) -> Dict[str, np.ndarray]:
        bic = bicubic_up(self.low, SCALE)
        harm = np.clip(np.round(harmonic_fill(self.crops, self.hole)), 0, 255).astype(np.uint8)
        return {"superres": psnr(bic, self.crops), "inpaint": psnr(harm, self.crops, self.hole)}

    def run(self, model, ts, batch=64, keep_cache=True, start="known", eta=1.0) -> Dict[str, np.ndarray]:
        out = {}
        for task, op in (("superres", self.sr), ("inpaint", self.ip)):
            cache = self.cache[task] if keep_cache else None
            img = edit_uint8(model, op, ts, self.noise[task], cache, batch, start=start, eta=eta)
            out[task] = psnr(img, self.crops, None if task == "superres" else self.hole)
            if task == "superres":   # the known data is kept: every 4x4 patch mean equals the input pixel
                assert np.abs(box_down(img, SCALE).astype(int) - self.low.astype(int)).max() <= 1
        return out


def mean_se(v: np.ndarray):
    """Mean and its standard error."""
    se = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0
    return float(v.mean()), se


def main(argv=None):
    from .export import load_checkpoint

    p = argparse.ArgumentParser(prog="python3 -m cmtrain.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.pt); the EMA weights are evaluated")
    p.add_argument("--raw-weights", action="store_true")
    p.add_argument("--data", default=EVAL_DATA, help="photo folder (default: shared/data/eval/kodak24)")
    p.add_argument("--crops", type=int, default=240)
    p.add_argument("--seed", type=int, default=0, help="crop positions and sampling noise")
    p.add_argument("--plans", default=json.dumps(DEFAULT_EVAL_PLANS),
                   help='JSON {"evaluations": ts, ...} or a list of plans [[0,39],[0,22,39],...]; '
                        "default: cmtrain.export's default plans for 1 and 2 evaluations")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", help="CSV of the results (task, method, plan, crops, mean PSNR and its standard error, "
                                 "mean paired difference to the task's baseline and its standard error)")
    p.add_argument("--per-crop", help="also write every crop's PSNR here (CSV)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)

    t0 = time.time()
    model = load_checkpoint(a.checkpoint, not a.raw_weights)
    ckpt = torch.load(a.checkpoint, map_location="cpu")
    photos = [load_rgb(f) for f in folder_paths(a.data)]
    tasks = Tasks(random_crops(photos, a.crops, SIZE, a.seed), a.seed)
    rows, per_crop = [], {}
    base = tasks.baselines()
    names = {"superres": "bicubic", "inpaint": "harmonic fill"}
    for task in ("superres", "inpaint"):
        rows.append([task, names[task], "-", a.crops, *mean_se(base[task]), 0.0, 0.0])
        per_crop[f"{task}:{names[task]}"] = base[task]
    given = json.loads(a.plans)
    plans = sorted(given.values() if isinstance(given, dict) else given, key=lambda ts: (len(ts), ts))
    for ts in plans:
        res = tasks.run(model, ts, a.batch)
        for task in ("superres", "inpaint"):
            rows.append([task, f"cm {len(ts) - 1} eval", ",".join(map(str, ts)), a.crops, *mean_se(res[task]),
                         *mean_se(res[task] - base[task])])
            per_crop[f"{task}:cm:{'-'.join(map(str, ts))}"] = res[task]
    print(f"checkpoint {a.checkpoint}: step {ckpt['step']}, {ckpt['images']} images; {a.crops} crops of "
          f"{os.path.normpath(a.data)} (seed {a.seed}); {time.time() - t0:.0f} s")
    print(f"{'task':9} {'method':14} {'plan':12} {'PSNR dB':>8} {'s.e.':>5} {'-baseline':>9} {'s.e.':>5}")
    for r in rows:
        print(f"{r[0]:9} {r[1]:14} {r[2]:12} {r[4]:8.2f} {r[5]:5.2f} {r[6]:9.2f} {r[7]:5.2f}")
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["task", "method", "plan", "crops", "psnr_db", "stderr_db", "minus_baseline_db",
                        "minus_baseline_stderr_db", "step", "images"])
            for r in rows:
                w.writerow(r[:4] + [f"{v:.3f}" for v in r[4:8]] + [ckpt["step"], ckpt["images"]])
    if a.per_crop:
        with open(a.per_crop, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["crop"] + list(per_crop))
            for i in range(a.crops):
                w.writerow([i] + [f"{per_crop[k][i]:.3f}" for k in per_crop])


if __name__ == "__main__":
    main()
