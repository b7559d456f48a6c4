"""Choose `cm.plans` (1..4 evaluations) by a small search on the VALIDATION photos of the training folder.

  python3 -m cmtrain.plansearch --checkpoint runs/default/last.pt --out-dir results

Score of a plan = mean of the superres-4x PSNR and the inpainting (centred 24x24 hole) PSNR of cmtrain.evaluate,
on 64x64 full-scale crops of the held-out photos of shared/data/train (cmtrain.data.is_validation, never the
eval photos). Plans are grid indices of the 40-level Karras grid (sigma 80 .. 0.002, rho 7); every plan starts
at 0 (pure noise, so it is a sensible unconditional plan too) and ends at 39, so k evaluations = k-1 free indices.
1. coarse: every k=2 plan with its middle index in COARSE2, and every k=3 / k=4 plan whose free indices are
   taken from COARSE (few crops);
2. refine: starting from the best `--top` coarse plans per k, coordinate search (move one free index by
   +-1, +-2 while it improves), on more crops.
Sampling noise is a function of (seed, step) only, so candidates are compared on the same noise and the steps
shared by plans with a common prefix are computed once. Writes OUT/NAME.csv (every plan scored) and
OUT/NAME.json (the chosen plans); NAME = --name. `--start OUT/NAME.json` skips the coarse stage and refines
from earlier choices (e.g. on a later checkpoint of the same run).
"""
import argparse
import csv
import itertools
import json
import os
import time

import numpy as np
import torch

from .evaluate import GRID, SIZE, Tasks, load_rgb, random_crops, validation_paths

COARSE2 = list(range(4, 39, 2))
COARSE = [5, 10, 15, 20, 25, 30, 34, 37]


class Scorer:
    def __init__(self, model, crops, seed, batch, stage, log, step):
        self.step = step
        self.model, self.tasks, self.batch, self.stage, self.log = model, Tasks(crops, seed), batch, stage, log
        self.n = len(crops)
        self.scores = {}

    def __call__(self, ts):
        ts = tuple(ts)
        if ts not in self.scores:
            r = self.tasks.run(self.model, list(ts), self.batch)
            sr, ip = float(r["superres"].mean()), float(r["inpaint"].mean())
            self.scores[ts] = (sr + ip) / 2
            self.log.append([self.step, self.stage, len(ts) - 1, ",".join(map(str, ts)), self.n,
                             f"{sr:.3f}", f"{ip:.3f}", f"{(sr + ip) / 2:.3f}"])
        return self.scores[ts]


def coarse_candidates(k: int):
    last = GRID - 1
    if k == 1:
        return [(0, last)]
    if k == 2:
        return [(0, a, last) for a in COARSE2]
    return [(0, *c, last) for c in itertools.combinations(COARSE, k - 1)]


def neighbours(ts):
    last = GRID - 1
    for j in range(1, len(ts) - 1):
        for d in (-2, -1, 1, 2):
            t = list(ts)
            t[j] += d
            if all(a < b for a, b in zip(t, t[1:])) and 0 < t[j] < last:
                yield tuple(t)


def refine(score, start, max_rounds=6):
    """Coordinate search: move to the best neighbour while it beats the current plan."""
    best, best_s = tuple(start), score(start)
    for _ in range(max_rounds):
        cand = max(neighbours(best), key=score, default=None)
        if cand is None or score(cand) <= best_s:
            break
        best, best_s = cand, score(cand)
    return best


def main(argv=None):
    from .export import DEFAULT_PLANS, load_checkpoint

    p = argparse.ArgumentParser(prog="python3 -m cmtrain.plansearch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out-dir", default="results")
    p.add_argument("--coarse-crops", type=int, default=32)
    p.add_argument("--fine-crops", type=int, default=96)
    p.add_argument("--top", type=int, default=2, help="coarse winners per k to refine")
    p.add_argument("--start", help="JSON plans to refine from instead of a coarse stage (e.g. an earlier plans.json)")
    p.add_argument("--all-k2", action="store_true", help="score every two-evaluation plan on the fine crops")
    p.add_argument("--max-rounds", type=int, default=6, help="refinement moves per start plan at most")
    p.add_argument("--name", default="plan_search", help="OUT/NAME.csv and OUT/NAME.json (the chosen plans)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)

    t0 = time.time()
    model = load_checkpoint(a.checkpoint)
    ckpt = torch.load(a.checkpoint, map_location="cpu")
    paths = validation_paths()
    photos = [load_rgb(f) for f in paths]
    print(f"{len(paths)} validation photos; checkpoint step {ckpt['step']}", flush=True)
    log = []
    ks = (1, 2, 3, 4)
    starts = {}
    if a.start:
        given = json.loads(open(a.start).read()) if os.path.exists(a.start) else json.loads(a.start)
        given = given.get("plans", given)
        starts = {int(k): [tuple(v)] for k, v in given.items()}
    else:
        coarse = Scorer(model, random_crops(photos, a.coarse_crops, SIZE, a.seed), a.seed, a.batch, "coarse", log,
                        ckpt["step"])
        for k in ks:
            cands = coarse_candidates(k) + ([tuple(DEFAULT_PLANS[str(k)])] if str(k) in DEFAULT_PLANS else [])
            ranked = sorted(set(cands), key=coarse, reverse=True)
            starts[k] = ranked[:a.top]
            print(f"coarse k={k}: {len(set(cands))} plans, best {[(c, round(coarse(c), 2)) for c in starts[k]]} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    fine = Scorer(model, random_crops(photos, a.fine_crops, SIZE, a.seed + 100), a.seed + 100, a.batch, "refine",
                  log, ckpt["step"])
    chosen = {}
    for k in ks:
        if k == 1:
            chosen[k] = (0, GRID - 1)
            fine(chosen[k])
            continue
        fine(tuple(DEFAULT_PLANS[str(k)]))
        if k == 2 and a.all_k2:     # cheap: every (0, a, 39) shares its first step
            starts[k] = [max(((0, m, GRID - 1) for m in range(1, GRID - 1)), key=fine)]
        ends = [refine(fine, s, a.max_rounds) for s in starts[k]]
        chosen[k] = max(ends, key=fine)
        print(f"refine k={k}: {chosen[k]} score {fine(chosen[k]):.2f} dB (default {DEFAULT_PLANS[str(k)]}: "
              f"{fine(tuple(DEFAULT_PLANS[str(k)])):.2f}) ({time.time() - t0:.0f} s)", flush=True)
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, a.name + ".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["checkpoint_step", "stage", "evaluations", "plan", "crops", "superres_psnr_db", "inpaint_psnr_db",
                    "score_db"])
        w.writerows(log)
    plans = {str(k): list(chosen[k]) for k in ks}
    with open(os.path.join(a.out_dir, a.name + ".json"), "w") as f:
        json.dump({"plans": plans, "checkpoint_step": ckpt["step"], "validation_photos": len(paths),
                   "coarse_crops": a.coarse_crops if not a.start else 0, "fine_crops": a.fine_crops,
                   "seed": a.seed, "score": "mean of superres-4x PSNR and inpainting (24x24 hole) PSNR, dB",
                   "fine_scores_db": {str(k): round(fine(chosen[k]), 3) for k in ks}}, f, indent=1)
    print(json.dumps(plans, separators=(",", ":")))
    print(f"{len(log)} plans scored in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
