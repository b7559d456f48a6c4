"""Cross-check cmtrain.evaluate against the real CLI: the same crops edited by `cm` (ONNX, onnxruntime-node) and
by PyTorch, PSNR computed the same way. The noise streams differ (the CLI has its own RNG), so the two agree
within sampling noise, not bit for bit; the paired difference per crop and its standard error are printed.

  python3 -m cmtrain.clicheck --onnx ../models/default.onnx --checkpoint runs/default/last.pt --crops 32

Inputs are written to a temporary folder outside the repository (16x16 box-averaged crops for superres, 64x64
crops and a mask with a white centred 24x24 hole for inpaint) and deleted afterwards.
"""
import argparse
import csv
import json
import math
import os
import subprocess
import tempfile
import time

import numpy as np
import onnx
import torch
from PIL import Image

from .evaluate import EVAL_DATA, HOLE, SCALE, SIZE, Tasks, centre_hole, folder_paths, load_rgb, psnr, random_crops

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def onnx_plans(path: str) -> dict:
    meta = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    return {int(k): v for k, v in json.loads(meta["cm.plans"]).items()}


def run_cli(args, threads):
    cmd = ["node", os.path.join(REPO, "bin", "cm.js"), *args, "--device", "cpu", "--threads", str(threads),
           "--seed", "0", "-q"]
    t = time.time()
    subprocess.run(cmd, check=True)
    return time.time() - t


def time_onnx(path: str, threads: int = 2, repeat: int = 50, size: int = SIZE) -> dict:
    """Median wall time of one 64x64 evaluation (batch 1) with onnxruntime-node (tests/run_adm_onnx.mjs)."""
    with tempfile.TemporaryDirectory(prefix="cm-time-") as tmp:
        x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype("<f4")
        x.tofile(os.path.join(tmp, "x.bin"))
        np.array([1.0], dtype="<f4").tofile(os.path.join(tmp, "s.bin"))
        res = subprocess.run(["node", os.path.join(REPO, "training", "tests", "run_adm_onnx.mjs"), path,
                              f"1,3,{size},{size}", os.path.join(tmp, "x.bin"), os.path.join(tmp, "s.bin"),
                              os.path.join(tmp, "y.bin"), "-", str(threads), str(repeat)],
                             check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None):
    from .export import load_checkpoint

    p = argparse.ArgumentParser(prog="python3 -m cmtrain.clicheck", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", required=True)
    p.add_argument("--checkpoint", required=True, help="the checkpoint the ONNX file was exported from")
    p.add_argument("--data", default=EVAL_DATA)
    p.add_argument("--crops", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="crop positions (cmtrain.evaluate's first crops)")
    p.add_argument("--steps", default="1,2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="CSV of the comparison")
    p.add_argument("--time-threads", type=int, default=2, help="then time one 64x64 evaluation with this many "
                                                               "onnxruntime threads (0: skip)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)

    plans = onnx_plans(a.onnx)
    crops = random_crops([load_rgb(f) for f in folder_paths(a.data)], a.crops, SIZE, a.seed)
    tasks = Tasks(crops, a.seed)
    hole = centre_hole(SIZE, HOLE)
    model = load_checkpoint(a.checkpoint)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cm-clicheck-") as tmp:
        for d in ("low", "full"):
            os.makedirs(os.path.join(tmp, d))
        for i in range(a.crops):
            Image.fromarray(tasks.low[i]).save(os.path.join(tmp, "low", f"c{i:04d}.png"))
            Image.fromarray(crops[i]).save(os.path.join(tmp, "full", f"c{i:04d}.png"))
        Image.fromarray((hole * 255).astype(np.uint8)).convert("RGB").save(os.path.join(tmp, "mask.png"))
        for k in [int(s) for s in a.steps.split(",")]:
            torch_res = tasks.run(model, plans[k])
            secs = {
                "superres": run_cli(["superres", os.path.join(tmp, "low"), "-x", str(SCALE), "--out-dir",
                                     os.path.join(tmp, f"sr{k}"), "--model", a.onnx, "--steps", str(k)], a.threads),
                "inpaint": run_cli(["inpaint", os.path.join(tmp, "full"), "--mask", os.path.join(tmp, "mask.png"),
                                    "--out-dir", os.path.join(tmp, f"ip{k}"), "--model", a.onnx, "--steps", str(k)],
                                   a.threads),
            }
            for task, folder, region in (("superres", f"sr{k}", None), ("inpaint", f"ip{k}", hole)):
                out = np.stack([np.asarray(Image.open(os.path.join(tmp, folder, f"c{i:04d}.{task}.png")).convert("RGB"))
                                for i in range(a.crops)])
                if task == "inpaint":   # the CLI returns every kept pixel exactly
                    assert np.array_equal(out[:, ~hole], crops[:, ~hole])
                cli = psnr(out, crops, region)
                d = cli - torch_res[task]
                rows.append([task, k, ",".join(map(str, plans[k])), a.crops, cli.mean(), torch_res[task].mean(),
                             d.mean(), d.std(ddof=1) / math.sqrt(len(d)), secs[task]])
    print(f"{'task':9} {'evals':5} {'plan':12} {'CLI dB':>7} {'torch dB':>8} {'diff':>6} {'s.e.':>5} {'CLI s':>6}")
    for r in rows:
        print(f"{r[0]:9} {r[1]:5} {r[2]:12} {r[4]:7.2f} {r[5]:8.2f} {r[6]:6.2f} {r[7]:5.2f} {r[8]:6.1f}")
    if a.time_threads:
        t = time_onnx(a.onnx, a.time_threads)
        print(f"onnxruntime-node, {a.time_threads} threads, batch 1, 64x64: median {t['medianMs']} ms, "
              f"min {t['minMs']} ms per evaluation ({len(t['runsMs'])} runs; session start {t['loadMs']} ms)")
        if a.out:
            with open(os.path.splitext(a.out)[0] + "_timing.json", "w") as f:
                json.dump({**t, "model": os.path.basename(a.onnx), "uptime_load": os.getloadavg()}, f)
    if a.out:
        with open(a.out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["task", "evaluations", "plan", "crops", "cli_psnr_db", "torch_psnr_db", "diff_db",
                        "diff_stderr_db", "cli_seconds"])
            for r in rows:
                w.writerow(r[:4] + [f"{v:.3f}" for v in r[4:8]] + [f"{r[8]:.1f}"])


if __name__ == "__main__":
    main()
