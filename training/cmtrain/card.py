"""Model-card figures comparing a new model with the one it replaces, both read from their ONNX files:

  python3 -m cmtrain.card --old OLD.onnx --new NEW.onnx --out-dir ../models

samples.png: unconditional samples (PyTorch, seed 0, 8 per row), rows: old 1 evaluation, new 1 evaluation, old 2
evaluations, new 2 evaluations, each with its model's own cm.plans entry (a 2-pixel white gap between rows).
Prints a markdown table of one-step denoising PSNR (f(x + sigma z, sigma), clamped; dB, images in [-1, 1], peak 2)
at several noise levels on fixed 64x64 crops of the validation photos (cmtrain.data's held-out 2%), old against new.
"""
import argparse
import json
import math
import os

import numpy as np
import torch
from PIL import Image

from .data import PhotoCrops
from .evaluate import TRAIN_DATA, generate
from .export import load_onnx_weights, read_metadata

SIGMAS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


@torch.no_grad()
def denoise_psnr(model, x: torch.Tensor, sigma: float, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(x.shape, generator=g)
    y = model(x + sigma * z, torch.full((x.shape[0],), sigma)).clamp(-1, 1)
    mse = ((y - x) ** 2).flatten(1).mean(1)
    return float((10 * torch.log10(4.0 / mse.clamp(min=1e-12))).mean())


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m cmtrain.card", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", required=True)
    p.add_argument("--new", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--crops", type=int, default=64)
    p.add_argument("--per-row", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    models = {name: load_onnx_weights(path) for name, path in (("old", a.old), ("new", a.new))}
    plans = {name: {int(k): v for k, v in json.loads(read_metadata(path)["cm.plans"]).items()}
             for name, path in (("old", a.old), ("new", a.new))}
    rows = []
    for k in (1, 2):
        for name in ("old", "new"):
            rows.append(generate(models[name], plans[name][k], a.per_row, seed=0))
    size = rows[0].shape[1]
    gap = 2
    sheet = np.full((len(rows) * (size + gap) - gap, a.per_row * size, 3), 255, dtype=np.uint8)
    for r, samples in enumerate(rows):
        for i in range(a.per_row):
            sheet[r * (size + gap):r * (size + gap) + size, i * size:(i + 1) * size] = samples[i]
    os.makedirs(a.out_dir, exist_ok=True)
    path = os.path.join(a.out_dir, "samples.png")
    Image.fromarray(sheet).save(path, optimize=True)
    print(f"wrote {path} ({os.path.getsize(path)} bytes); rows: old 1 eval {plans['old'][1]}, new 1 eval "
          f"{plans['new'][1]}, old 2 evals {plans['old'][2]}, new 2 evals {plans['new'][2]}")

    val = PhotoCrops(TRAIN_DATA, 64, "val", seed=2)
    x = torch.from_numpy(val.batch(a.crops))
    print(f"\n| noise sigma ([-1, 1] units) | 0-255 units | old dB | new dB | new - old |\n|---|---|---|---|---|")
    for s in SIGMAS:
        old, new = (denoise_psnr(models[n], x, s) for n in ("old", "new"))
        print(f"| {s:g} | {s * 127.5:.1f} | {old:.2f} | {new:.2f} | {new - old:+.2f} |")


if __name__ == "__main__":
    main()
