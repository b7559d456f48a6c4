"""Figures for the model card: the loss curve (drawn with PIL; no matplotlib here) and 8x8 grids of samples.

  python3 -m cmtrain.report --run runs/default --checkpoint runs/default/last.pt --onnx ../models/default.onnx \
      --out-dir ../models

loss.png: the logged training loss (mean per 20 steps, log scale, moving average of 10 points) against the step,
with the ECT stage boundaries, and the validation one-step denoising PSNR of the EMA model (val.csv) under it.
samples-1.png / samples-2.png: 64 unconditional samples of the EMA weights (PyTorch, seed 0) with the plans
for 1 and 2 evaluations of the ONNX file's cm.plans (or --plans).
"""
import argparse
import csv
import json
import math
import os
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .evaluate import generate, image_grid

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def load_font(size=12):
    """DejaVu Sans where installed (text anchors need a TrueType font), else PIL's bitmap font."""
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            pass
    return ImageFont.load_default()


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


class Panel:
    def __init__(self, draw, box, xr, yr, font):
        self.d, self.box, self.xr, self.yr, self.font = draw, box, xr, yr, font

    def xy(self, x, y):
        (l, t, r, b), (x0, x1), (y0, y1) = self.box, self.xr, self.yr
        return l + (x - x0) / (x1 - x0) * (r - l), b - (y - y0) / (y1 - y0) * (b - t)

    def frame(self, xticks, yticks, ylabel_fmt, title):
        l, t, r, b = self.box
        for yv in yticks:
            _, py = self.xy(self.xr[0], yv)
            self.d.line([(l, py), (r, py)], fill=(225, 225, 225))
            self.d.text((l - 4, py), ylabel_fmt(yv), fill=(0, 0, 0), font=self.font, anchor="rm")
        for xv in xticks:
            px, _ = self.xy(xv, self.yr[0])
            self.d.line([(px, b), (px, b + 4)], fill=(0, 0, 0))
            self.d.text((px, b + 6), f"{xv:g}", fill=(0, 0, 0), font=self.font, anchor="mt")
        self.d.rectangle(self.box, outline=(0, 0, 0))
        self.d.text((l, t - 6), title, fill=(0, 0, 0), font=self.font, anchor="lb")

    def line(self, xs, ys, colour, width=2):
        pts = [self.xy(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
        if len(pts) > 1:
            self.d.line(pts, fill=colour, width=width)


def nice_ticks(lo, hi, n=6):
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    return [v * step for v in range(math.ceil(lo / step), math.floor(hi / step) + 1)]


def loss_plot(run: str, out: str, exported_step: Optional[int] = None) -> None:
    """Training loss over the run (ECT stage starts in red) and validation PSNR; a black line marks the step of the
    exported checkpoint when it is given (the run may have gone on after it)."""
    loss = read_csv(os.path.join(run, "loss.csv"))
    val = read_csv(os.path.join(run, "val.csv"))
    steps = np.array([int(r["step"]) for r in loss])
    lv = np.log10(np.array([float(r["loss"]) for r in loss]))
    smooth = np.convolve(lv, np.ones(10) / 10, mode="valid")
    stages = np.array([int(r["stage"]) for r in loss])
    w, h = 760, 560
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    font = load_font()
    xr = (0, steps.max() * 1.02)
    xt = nice_ticks(*xr)
    p1 = Panel(d, (70, 40, w - 20, 290), xr, (math.floor(lv.min() * 4) / 4, math.ceil(lv.max() * 4) / 4), font)
    p1.frame(xt, nice_ticks(*p1.yr, n=5), lambda v: f"{10 ** v:.0f}" if 10 ** v >= 100 else f"{10 ** v:.3g}",
             "training loss (mean per 20 steps, log scale; grey: raw, blue: 10-point average); | = ECT stage starts")
    p1.line(steps, lv, (190, 190, 190), 1)
    p1.line(steps[9:], smooth, COLOURS[0], 2)
    for i in range(1, len(stages)):
        if stages[i] != stages[i - 1]:
            x, _ = p1.xy(steps[i], p1.yr[0])
            d.line([(x, 40), (x, 290)], fill=(200, 0, 0))
            d.text((x + 3, 45), f"stage {stages[i]}", fill=(200, 0, 0), font=font)
    keys = [k for k in val[0] if k.startswith("psnr@")]
    vs = np.array([int(r["step"]) for r in val])
    allv = np.array([[float(r[k]) for k in keys] for r in val])
    p2 = Panel(d, (70, 330, w - 20, h - 45), xr, (math.floor(allv.min() - 1), math.ceil(allv.max() + 1)), font)
    p2.frame(xt, nice_ticks(*p2.yr, n=6), lambda v: f"{v:g}",
             "validation: one-step denoising PSNR (dB) of the EMA weights, 32 held-out 64x64 crops")
    for j, k in enumerate(keys):
        p2.line(vs, allv[:, j], COLOURS[j % len(COLOURS)])
        d.text((70 + 90 * j, h - 12), f"sigma {k[5:]}", fill=COLOURS[j % len(COLOURS)], font=font, anchor="lm")
    d.text((w - 20, h - 12), "training step", fill=(0, 0, 0), font=font, anchor="rm")
    if exported_step is not None:
        x, _ = p1.xy(exported_step, p1.yr[0])
        for top, bottom in ((40, 290), (330, h - 45)):
            d.line([(x, top), (x, bottom)], fill=(0, 0, 0), width=2)
        d.text((x - 3, 275), f"exported: step {exported_step}", fill=(0, 0, 0), font=font, anchor="rb")
    im.save(out, optimize=True)


def main(argv=None):
    from .clicheck import onnx_plans
    from .export import load_checkpoint

    p = argparse.ArgumentParser(prog="python3 -m cmtrain.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/default")
    p.add_argument("--checkpoint")
    p.add_argument("--onnx", help="read the plans from this model's cm.plans")
    p.add_argument("--plans", help='JSON, e.g. {"1":[0,39],"2":[0,22,39]}')
    p.add_argument("--out-dir", default="results")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    os.makedirs(a.out_dir, exist_ok=True)
    step = torch.load(a.checkpoint, map_location="cpu")["step"] if a.checkpoint else None
    loss_plot(a.run, os.path.join(a.out_dir, "loss.png"), step)
    print(f"wrote {os.path.join(a.out_dir, 'loss.png')}")
    if a.checkpoint:
        plans = onnx_plans(a.onnx) if a.onnx else {int(k): v for k, v in json.loads(a.plans).items()}
        model = load_checkpoint(a.checkpoint)
        for k in (1, 2):
            path = os.path.join(a.out_dir, f"samples-{k}.png")
            image_grid(generate(model, plans[k], 64, a.seed)).save(path, optimize=True)
            print(f"wrote {path} (plan {plans[k]}, {os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
