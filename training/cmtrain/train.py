"""Easy Consistency Tuning (Geng et al. 2024) from scratch, resumable on CPU or CUDA.

  python3 -m cmtrain.train --out runs/NAME --preset small --crop 32 --batch 32 --threads 1 --minutes 120
  python3 -m cmtrain.train --out runs/NAME --resume --minutes 9       # same run, any machine

Per step (TRAINING.md): ln t ~ N(P_mean, P_std^2); r = t (1 - q^-(stage+1) (1 + k sigmoid(-b t))),
clamped at 0; x_t = x0 + t eps and x_r = x0 + r eps with the same eps;
loss = w(t) (sqrt(||f(x_t, t) - sg f(x_r, r)||^2 + c^2) - c), w(t) = (t^2 + sd^2) / (t sd)^2.
Where r is below sigma_min the target is x0 itself (plain denoising); the first --pretrain-iters
steps use r = 0 everywhere (diffusion pretraining), then the stage grows every --stage-iters.
The teacher f(x_r, r) is the same network under no_grad with the student's dropout mask.

Checkpoints: OUT/last.pt (resume from it) and OUT/best.pt, the one whose EMA weights edit best: at every
validation the EMA model does 4x super-resolution and centre-hole inpainting (cmtrain.evaluate) of fixed
held-out crops with each plan of --select-plans; the score is the mean PSNR over tasks and plans (select.csv).
"""
import argparse
import contextlib
import copy
import csv
import json
import math
import os
import signal
import time

import numpy as np
import torch

from .consistency import SIGMA_DATA, SIGMA_MAX, SIGMA_MIN, ConsistencyModel, check_plans
from .data import DeviceCrops, PhotoCrops
from .edits import edit_shift
from .unet import PRESETS, UNetConfig, count_params


# Defaults of the recipe flags (TRAINING.md); a resumed run keeps the values it was started with.
RECIPE = dict(lr=1e-4, warmup=200, ema=0.999, p_mean=-1.1, p_std=2.0, q=4.0, k=8.0, b=1.0, huber_c=0.0,
              pretrain_iters=2000, stage_iters=1000, stage_offset=0, denoise_below=0.0, loss="ect", anchor_above=2.0,
              edit_mix=0.0, edit_below=1.0, edit_scale=1.0)
# What best.pt is chosen by: warm-started edits (ALGORITHMS.md 4b), the start and plans the CLI's task defaults use.
DEFAULT_SELECT = [{"ts": [26, 28, 31, 33, 39], "start": "estimate", "eta": 0.0},
                  {"ts": [22, 26, 30, 39], "start": "estimate", "eta": 0.0}]
DEFAULT_DATA = [os.path.join(os.path.dirname(__file__), *up, "shared", "data", "train") for up in (["..", "..", ".."],
                                                                                                   ["..", ".."])]


def stage_at(step: int, a) -> int:
    """-1 during the denoising pretraining, then 0, 1, 2, ..."""
    return -1 if step < a.pretrain_iters else getattr(a, "stage_offset", 0) + (step - a.pretrain_iters) // a.stage_iters


def t_to_r(t: torch.Tensor, stage: int, a) -> torch.Tensor:
    """The teacher's noise level; 0 (target x0, plain denoising) during pretraining and, with --denoise-below T,
    wherever t < T: the low noise levels that warm-started edits use keep learning the posterior mean."""
    if stage < 0:
        return torch.zeros_like(t)
    decay = a.q ** -(stage + 1)
    r = (t * (1 - decay * (1 + a.k * torch.sigmoid(-a.b * t)))).clamp(min=0)
    below = getattr(a, "denoise_below", 0.0)
    return torch.where(t < below, torch.zeros_like(r), r) if below > 0 else r


def ect_loss(model, x0: torch.Tensor, stage: int, a, autocast, anchor=None) -> torch.Tensor:
    n, dev = x0.shape[0], x0.device
    # t below sigma_min would sit outside f's domain; above sigma_max is never sampled from.
    t = (torch.randn(n, device=dev) * a.p_std + a.p_mean).exp().clamp(SIGMA_MIN, SIGMA_MAX)
    r = t_to_r(t, stage, a)
    eps = torch.randn_like(x0)
    x_t = x0 + t[:, None, None, None] * eps
    if getattr(a, "edit_mix", 0.0) > 0:
        # A share of the crops as the sampler's edits query the network (cmtrain.edits): the classical start's error
        # plus the noise, target the photo; only where the target is the photo itself (r below sigma_min).
        x_t = x_t + edit_shift(x0, t, a.edit_mix, a.edit_below, getattr(a, "edit_scale", 1.0), allowed=r < SIGMA_MIN)

    rng = torch.cuda.get_rng_state(dev) if dev.type == "cuda" else torch.get_rng_state()
    with autocast():
        f_t = model(x_t, t)
    target = x0
    if anchor is not None:
        # Above --anchor-above the target is a frozen model's own answer (what it does at high noise is kept: its
        # one-step samples), below it the clean image (plain denoising). Only the crops above it go through the
        # anchor (a tenth of them with ln t ~ N(-1.2, 1.5^2)).
        high = t >= a.anchor_above
        if high.any():
            with torch.no_grad(), autocast():
                kept = anchor(x_t[high], t[high]).float()
            target = x0.clone()
            target[high] = kept
    use = r >= SIGMA_MIN
    if use.any():
        # Same dropout mask as the student: replay the RNG from before the student's call.
        torch.cuda.set_rng_state(rng, dev) if dev.type == "cuda" else torch.set_rng_state(rng)
        r_eval = r.clamp(min=SIGMA_MIN)
        with torch.no_grad(), autocast():
            f_r = model(x0 + r_eval[:, None, None, None] * eps, r_eval)
        target = torch.where(use[:, None, None, None], torch.nan_to_num(f_r.float()), x0)

    d = ((f_t.float() - target) ** 2).flatten(1).sum(1)
    w = (t ** 2 + SIGMA_DATA ** 2) / (t * SIGMA_DATA) ** 2
    if getattr(a, "loss", "ect") == "mse":
        # EDM's weighted squared error per pixel: its minimiser is the posterior mean (best PSNR), where ECT's
        # sqrt(d) has a median-like minimiser.
        return (w * d / x0[0].numel()).mean()
    loss = torch.sqrt(d + a.huber_c ** 2) - a.huber_c
    return (w * loss).mean()


# One-step denoising PSNR is measured at these noise levels; the first four ([-1, 1] units: 6.4 to 64 grey levels,
# where warm-started edits query the model) count in the run's validation score.
VAL_SIGMAS = (0.05, 0.1, 0.2, 0.5, 2.0, 10.0, 80.0)
SCORED_SIGMAS = (0.05, 0.1, 0.2, 0.5)
# What "best" means in a run folder; a run resumed under another definition scores its checkpoint again.
SCORE_KIND = "mean(denoise 0.05-0.5, edits)"


@torch.no_grad()
def validate(model, val_x: torch.Tensor, seed: int = 1234) -> dict:
    """One-step denoising PSNR (dB, images in [-1, 1], peak 2) on fixed validation crops at a few sigmas."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for s in VAL_SIGMAS:
        z = torch.randn(val_x.shape, generator=g).to(val_x.device)
        sigma = torch.full((val_x.shape[0],), s, device=val_x.device)
        y = model(val_x + s * z, sigma).clamp(-1, 1)
        mse = ((y - val_x) ** 2).mean().item()
        out[f"psnr@{s:g}"] = 10 * math.log10(4.0 / max(mse, 1e-12))
    return out


@torch.no_grad()
def select_specs(text: str) -> list:
    """--select-plans: a JSON list of {"ts", "start", "eta"} or an object evaluations -> ts (start known, eta 1)."""
    v = json.loads(text)
    if isinstance(v, dict):
        check_plans(v, 40)
        return [{"ts": ts, "start": "known", "eta": 1.0, "name": k} for k, ts in sorted(v.items())]
    if not isinstance(v, list) or not v:
        raise ValueError(f"Expected a list of plans or an object but received {text}")
    out = []
    for spec in v:
        ts = spec.get("ts") if isinstance(spec, dict) else None
        if (not isinstance(ts, list) or len(ts) < 2 or ts[-1] != 39 or not all(isinstance(t, int) for t in ts)
                or ts[0] < 0 or any(x >= y for x, y in zip(ts, ts[1:]))):
            raise ValueError(f"Expected ts of strictly increasing indices ending at 39 but received {spec}")
        start, eta = spec.get("start", "known"), float(spec.get("eta", 1.0))
        if start not in ("known", "estimate") or not 0 <= eta <= 1:
            raise ValueError(f"Expected start known|estimate and eta in [0, 1] but received {spec}")
        out.append({"ts": ts, "start": start, "eta": eta, "name": f"{start[0]}{'-'.join(map(str, ts))}e{eta:g}"})
    return out


@torch.no_grad()
def edit_scores(model, val_x: torch.Tensor, specs: list, seed: int = 1) -> dict:
    """Validation PSNR (dB) of 4x super-resolution and centre-hole inpainting with each plan spec (cmtrain.evaluate's
    tasks and sampler); "score" is their mean, what best.pt is chosen by."""
    from .evaluate import Tasks
    crops = ((val_x.float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    tasks = Tasks(crops, seed=seed)
    device = next(model.parameters()).device
    run_model = lambda x, sigma: model(x.to(device), sigma.to(device)).float().cpu()
    out = {}
    for spec in specs:
        for task, v in tasks.run(run_model, spec["ts"], start=spec["start"], eta=spec["eta"]).items():
            out[f"{task}@{spec['name']}"] = float(v.mean())
    out["score"] = float(np.mean(list(out.values())))
    return out


def save(path: str, state: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)     # never leave a half-written checkpoint behind


def run_score(val: dict, edits: dict) -> float:
    """The run's validation score (SCORE_KIND): the mean of the one-step denoising PSNR at SCORED_SIGMAS and the
    edit score, both in dB."""
    return 0.5 * (float(np.mean([val[f"psnr@{s:g}"] for s in SCORED_SIGMAS])) + edits["score"])


def cut_log(path: str, step: int) -> None:
    """Drop the rows of a CSV log written after `step` (by an invocation killed before its next checkpoint), so that a
    resumed run's logs read as one run. A log whose header is not the current one is set aside as NAME.N.csv."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = [rows[0]] + [r for r in rows[1:] if len(r) == len(rows[0]) and r[0].isdigit() and int(r[0]) <= step] if rows else []
    if len(keep) != len(rows):
        tmp = path + ".tmp"
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(keep)
        os.replace(tmp, path)


def set_aside_if_changed(path: str, header: list) -> None:
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        first = next(csv.reader(f), None)
    if first != header:
        n = 1
        while os.path.exists(f"{path[:-4]}.{n}.csv"):
            n += 1
        os.replace(path, f"{path[:-4]}.{n}.csv")


class ThreadChooser:
    """Torch threads: 1 or `most`, whichever trains faster now. On an idle machine every core pays; on a busy one
    OpenMP's threads wait for each other (measured here under a load of 7 on 2 cores: 1 thread 0.93 s a step, 2
    threads 8.6 s). So every `period` steps, `trial` steps are timed at 1 thread, then at `most` threads, a trial
    cut short as soon as one of its steps takes over 1.5x the 1-thread median; `most` is kept for the period only if
    its median is under 0.8x the 1-thread one. Only speed changes (and the last bits of sums split by thread)."""

    def __init__(self, most: int, period: int = 200, trial: int = 4):
        self.most, self.period, self.trial = max(1, most), period, trial
        self.n, self.one, self.many, self.best = 0, [], [], 1
        self.phase = "one" if self.most > 1 else "run"
        torch.set_num_threads(1)

    def step_took(self, seconds: float) -> None:
        self.n += 1
        if self.phase == "one":
            self.one.append(seconds)
            if len(self.one) == self.trial:
                self.phase = "many"
        elif self.phase == "many":
            self.many.append(seconds)
            ref = sorted(self.one)[len(self.one) // 2]
            if seconds > 1.5 * ref or len(self.many) == self.trial:
                many = sorted(self.many)[len(self.many) // 2]
                self.best = self.most if len(self.many) == self.trial and many < 0.8 * ref else 1
                self.phase, self.one, self.many, self.started = "run", [], [], self.n
        elif self.most > 1 and self.n - getattr(self, "started", 0) >= self.period:
            self.phase = "one"
        torch.set_num_threads({"one": 1, "many": self.most, "run": self.best}[self.phase])


def bf16_supported() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX): oneDNN's bf16 kernels pay only there."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def main(argv=None, on_checkpoint=None):
    """on_checkpoint(path, state): called after every checkpoint written (last.pt or best.pt) with what it holds, e.g. to
    copy it elsewhere."""
    p = argparse.ArgumentParser(prog="python3 -m cmtrain.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--data", help="folder tree of training photos (default: ../shared/data/train beside the "
                                  "repository, else shared/data/train inside it)")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS))
    p.add_argument("--dropout", type=float, help="override the preset's dropout")
    p.add_argument("--val-percent", type=float, default=2.0, help="share of photos held out (by name hash)")
    p.add_argument("--crop", type=int, default=32)
    p.add_argument("--val-crop", type=int, default=64, help="validation crop size (fixed per run)")
    p.add_argument("--batch", type=int, default=32)
    # Recipe flags: a resumed run keeps its own values unless a flag is given again (see RECIPE).
    p.add_argument("--lr", type=float, help=f"Adam learning rate ({RECIPE['lr']})")
    p.add_argument("--warmup", type=int, help=f"linear lr warm-up steps ({RECIPE['warmup']})")
    p.add_argument("--ema", type=float, help=f"EMA decay of the exported weights ({RECIPE['ema']})")
    p.add_argument("--p-mean", type=float, help=f"mean of ln t ({RECIPE['p_mean']})")
    p.add_argument("--p-std", type=float, help=f"std of ln t ({RECIPE['p_std']})")
    p.add_argument("--q", type=float, help=f"ECT q ({RECIPE['q']})")
    p.add_argument("--k", type=float, help=f"ECT k ({RECIPE['k']})")
    p.add_argument("--b", type=float, help=f"ECT b ({RECIPE['b']})")
    p.add_argument("--huber-c", type=float, help=f"pseudo-Huber c, 0 = sqrt of the L2 distance ({RECIPE['huber_c']})")
    p.add_argument("--pretrain-iters", type=int,
                   help=f"steps of pure denoising (r = 0) first ({RECIPE['pretrain_iters']})")
    p.add_argument("--stage-iters", type=int,
                   help=f"steps per ECT stage after that ({RECIPE['stage_iters']}); the stage is step-derived")
    p.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget of this invocation")
    p.add_argument("--stop-at", type=float, default=0.0,
                   help="also stop training at this time (seconds since the epoch; 0 = no such limit): a deadline "
                        "that counts the set-up too")
    p.add_argument("--max-steps", type=int, default=0, help="stop at this total step (0 = no limit)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0 = torch default); negative -N: adapt between 1 and N threads, keeping "
                        "whichever trains faster (timed every few hundred steps: on a busy machine fewer threads win)")
    p.add_argument("--val-every", type=int, default=200,
                   help="validate at a checkpoint only if this many steps were trained since the last validation "
                        "(last.pt is still written every --ckpt-minutes)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--data-on-device", action="store_true",
                   help="keep the photos on the training device and crop there (a GPU: no CPU loader between steps)")
    p.add_argument("--select-plans", default=json.dumps(DEFAULT_SELECT),
                   help='plans best.pt is chosen by: a JSON list of {"ts": grid indices (N=40), "start": '
                        '"known"|"estimate", "eta": 0..1}, or an object evaluations -> ts (start known, eta 1)')
    p.add_argument("--stage-offset", type=int,
                   help=f"ECT stage at the end of pretraining ({RECIPE['stage_offset']}; e.g. the stage an --init-onnx "
                        "model was trained to)")
    p.add_argument("--init-onnx", help="a new run starts from the weights of this cm ONNX file (made by "
                                       "cmtrain.export; e.g. ../models/default.onnx) with a fresh optimiser (or of a "
                                       "weights file of cmtrain.export.save_weights, or a checkpoint's EMA)")
    p.add_argument("--denoise-below", type=float,
                   help=f"plain denoising target (r = 0) wherever t is below this ({RECIPE['denoise_below']}: never)")
    p.add_argument("--anchor-onnx", help="keep this cm ONNX model's answers (its weights, frozen) as the target at noise "
                                         "levels of --anchor-above and more: plain denoising below, the old one-step "
                                         "samples above")
    p.add_argument("--anchor-above", type=float, help=f"noise level from which --anchor-onnx is the target ({RECIPE['anchor_above']})")
    p.add_argument("--edit-mix", type=float,
                   help="share of the crops under --edit-below given as the CLI's edits query the network: the "
                        f"classical start of superres x2/x4/x8 or colorize plus the noise, target the photo "
                        f"(cmtrain.edits; {RECIPE['edit_mix']})")
    p.add_argument("--edit-below", type=float, help=f"noise level under which --edit-mix applies ({RECIPE['edit_below']})")
    p.add_argument("--edit-scale", type=float,
                   help=f"cap of the start's error (RMS) in units of the noise level t ({RECIPE['edit_scale']})")
    p.add_argument("--loss", choices=["ect", "mse"],
                   help=f"ect: w(t) sqrt(d) (ECT); mse: w(t) d / pixels (EDM; posterior mean) ({RECIPE['loss']})")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="off",
                   help="CPU: bfloat16 autocast for convolutions and matrix products (normalisations stay float32); "
                        "auto = on where the CPU has AVX512-BF16 or AMX (CUDA always uses bf16 autocast)")
    p.add_argument("--val-crops", type=int, default=64, help="fixed validation crops (a new run's; kept on resume)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--ckpt-minutes", type=float, default=5.0)
    a = p.parse_args(argv)
    try:
        select_plans = select_specs(a.select_plans)
    except (ValueError, AttributeError) as e:
        p.error(f"--select-plans: {e}")

    if a.data is None:
        a.data = next((d for d in DEFAULT_DATA if os.path.isdir(d)), DEFAULT_DATA[0])
    threads = ThreadChooser(-a.threads) if a.threads < 0 else None
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if a.device == "auto" else a.device))
    os.makedirs(a.out, exist_ok=True)
    ckpt_path = os.path.join(a.out, "last.pt")

    ckpt = torch.load(ckpt_path, map_location=dev) if a.resume else None
    for key, default in RECIPE.items():
        if getattr(a, key) is None:
            setattr(a, key, ckpt["args"].get(key, default) if ckpt else default)
    init = None
    if ckpt:
        cfg = UNetConfig(**{**ckpt["config"], "mults": tuple(ckpt["config"]["mults"])})
        if a.dropout is not None:   # dropout has no weights: a resumed run may change it
            cfg = UNetConfig(**{**cfg.to_json_dict(), "mults": cfg.mults, "dropout": a.dropout})
    elif a.init_onnx:
        from .export import load_weights
        init = load_weights(a.init_onnx)
        cfg = init.net.cfg
        if a.dropout is not None:
            cfg = UNetConfig(**{**cfg.to_json_dict(), "mults": cfg.mults, "dropout": a.dropout})
        torch.manual_seed(a.seed)
    else:
        cfg = PRESETS[a.preset]
        if a.dropout is not None:
            cfg = UNetConfig(**{**cfg.to_json_dict(), "mults": cfg.mults, "dropout": a.dropout})
        torch.manual_seed(a.seed)

    if ckpt and a.anchor_onnx is None:
        a.anchor_onnx = ckpt["args"].get("anchor_onnx")    # a resumed run keeps its anchor
    anchor = None
    if a.anchor_onnx:
        from .export import load_weights
        # the same file as --init-onnx (a plain run's own answers): read once
        anchor = copy.deepcopy(init) if init is not None and a.anchor_onnx == a.init_onnx else load_weights(a.anchor_onnx)
        anchor = anchor.to(dev).eval().requires_grad_(False)
    model = ConsistencyModel(cfg).to(dev)
    if init is not None:
        model.load_state_dict(init.state_dict())
    ema = ConsistencyModel(cfg).to(dev).eval().requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    data = PhotoCrops(a.data, a.crop, "train", seed=a.seed, val_percent=a.val_percent)
    if a.data_on_device:
        data = DeviceCrops(data, dev, seed=a.seed)
    # Validation at the deployed resolution, whatever the training crop: fixed 64x64 crops of held-out photos.
    val = PhotoCrops(a.data, a.val_crop, "val", seed=1, val_percent=a.val_percent)
    val_crops = ckpt["args"].get("val_crops", 32) if ckpt else a.val_crops
    a.val_crops = val_crops
    val_x = torch.from_numpy(val.batch(val_crops)).to(dev)
    # seconds_before / cpu_before: wall time and CPU time (all threads) of earlier invocations
    step, images, seconds_before, cpu_before = 0, 0, 0.0, 0.0
    best_score = -math.inf
    if ckpt:
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["opt"])
        step, images, seconds_before = ckpt["step"], ckpt["images"], ckpt["seconds"]
        # Checkpoints from before CPU time was counted ran on one thread: their wall time is their CPU time.
        cpu_before = ckpt.get("cpu_seconds", ckpt["seconds"])
        best_score = ckpt.get("best_score", -math.inf) if ckpt.get("score_kind") == SCORE_KIND else -math.inf
        if torch.is_tensor(ckpt["data_rng"]) != isinstance(data, DeviceCrops):
            raise SystemExit(f"{ckpt_path}: this run was started {'with' if torch.is_tensor(ckpt['data_rng']) else 'without'} "
                             "--data-on-device: resume it the same way")
        data.set_rng_state(ckpt["data_rng"])
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        if dev.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"].cpu(), dev)

    if dev.type == "cuda":
        autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    elif a.bf16 == "on" or (a.bf16 == "auto" and bf16_supported()):
        autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    else:
        autocast = contextlib.nullcontext

    def state():
        return {"config": cfg.to_json_dict(), "args": vars(a), "step": step, "stage": stage_at(step, a),
                "images": images, "seconds": seconds_before + time.time() - start,
                "cpu_seconds": cpu_before + time.process_time() - cpu_start, "best_score": best_score,
                "score_kind": SCORE_KIND,
                "model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                "data_rng": data.rng_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None}

    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    log_path, val_path = os.path.join(a.out, "loss.csv"), os.path.join(a.out, "val.csv")
    select_path, best_path = os.path.join(a.out, "select.csv"), os.path.join(a.out, "best.pt")
    for path in (log_path, val_path, select_path):
        cut_log(path, step)
    set_aside_if_changed(val_path, ["step", "images"] + [f"psnr@{s:g}" for s in VAL_SIGMAS])
    new_log = not os.path.exists(log_path)
    log = open(log_path, "a", newline="")
    logw = csv.writer(log)
    if new_log:
        logw.writerow(["step", "images", "seconds", "stage", "lr", "loss"])
        with open(os.path.join(a.out, "config.json"), "w") as f:
            json.dump({"config": cfg.to_json_dict(), "params": count_params(model), "args": vars(a)}, f, indent=1)
    print(f"device {dev}, {count_params(model)} parameters, {data.photos} train / {val.photos} val photos, "
          f"step {step}", flush=True)

    def checkpoint(path):
        st = state()
        save(path, st)
        if on_checkpoint:
            log.flush()     # the logs it may copy are up to date
            on_checkpoint(path, st)

    def run_validation():
        nonlocal best_score
        res = validate(ema, val_x)
        new = not os.path.exists(val_path)
        with open(val_path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", "images"] + list(res))
            w.writerow([step, images] + [f"{v:.3f}" for v in res.values()])
        print(f"val step {step}: " + " ".join(f"{k} {v:.2f}" for k, v in res.items()), flush=True)
        edits = edit_scores(ema, val_x, select_plans)
        score = run_score(res, edits)
        better = score > best_score
        header = ["step", "images"] + list(edits) + ["run_score", "best"]
        set_aside_if_changed(select_path, header)
        new = not os.path.exists(select_path)
        with open(select_path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(header)
            w.writerow([step, images] + [f"{v:.3f}" for v in edits.values()] + [f"{score:.3f}", int(better)])
        print(f"edit step {step}: " + " ".join(f"{k} {v:.2f}" for k, v in edits.items())
              + f" run score {score:.3f}" + (" (best so far)" if better else ""), flush=True)
        if better:
            best_score = score
            checkpoint(best_path)

    start, cpu_start = time.time(), time.process_time()
    validated_at = step
    last_ckpt, acc, n_acc = start, 0.0, 0
    if step > 0 and best_score == -math.inf:   # resuming a run from before best.pt existed: score where it stands
        run_validation()
    model.train()
    while not stop["flag"]:
        if time.time() - start > a.minutes * 60 or (a.max_steps and step >= a.max_steps) or 0 < a.stop_at < time.time():
            break
        stage = stage_at(step, a)
        lr = a.lr * min(1.0, (step + 1) / a.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x0 = data.batch(a.batch)
        x0 = x0 if torch.is_tensor(x0) else torch.from_numpy(x0).to(dev, non_blocking=True)
        t_step = time.perf_counter()
        loss = ect_loss(model, x0, stage, a, autocast, anchor)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if threads is not None:
            threads.step_took(time.perf_counter() - t_step)
        # EMA with a warm-up so that early averages are not dominated by the random init.
        decay = min(a.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        step += 1
        images += a.batch
        acc, n_acc = acc + loss.item(), n_acc + 1
        if step % a.log_every == 0:
            secs = seconds_before + time.time() - start
            logw.writerow([step, images, f"{secs:.1f}", stage, f"{lr:.3g}", f"{acc / n_acc:.5f}"])
            log.flush()
            acc, n_acc = 0.0, 0
        if time.time() - last_ckpt > a.ckpt_minutes * 60:
            if step - validated_at >= a.val_every:
                run_validation()
                validated_at = step
            checkpoint(ckpt_path)
            last_ckpt = time.time()

    run_validation()
    checkpoint(ckpt_path)
    log.close()
    total = seconds_before + time.time() - start
    print(f"stopped at step {step}, {images} images, {total / 60:.1f} min in total", flush=True)


if __name__ == "__main__":
    main()
