"""Promote the continuous run's best checkpoint to models/default.onnx, only if it is better on validation.

  npm run train:promote [-- --dry-run]                  (from the repository root)
  python3 -m cmtrain.promote [--checkpoint runs/continuous/best.pt] [--dry-run]     (from training/)

1. Export the checkpoint's EMA weights with the shipped model's metadata (plans, licence, training data), named one
   version up (cm-patch64-small-2 -> cm-patch64-small-3).
2. Re-run the per-task plan search for it in the bounded fast mode (`bench/plansearch.mjs --start model --rounds 1`:
   from the shipped model's own plans, one round of moves per plan, on 24 validation crops) and store its plans.
3. Measure both models on the held-out validation photos (never Kodak24 or Set5):
   - one-step denoising PSNR at sigma 0.05, 0.1, 0.2, 0.5 ([-1, 1] units) on the model card's 64 fixed 64x64 crops
     (cmtrain.card's protocol), f(x + sigma z, sigma) clamped;
   - the edit score of training's validation (cmtrain.train.edit_scores: 4x super-resolution and centre-hole
     inpainting with warm-started plans) on the same crops;
   - the CLI's own operators and sampler with each model's own per-task defaults (`bench/plansearch.mjs
     --score-only`, onnxruntime-node): superres x2/x4/x8, inpaint box/strokes, denoise 25, PSNR.
4. The candidate is better when its mean denoising PSNR over the four noise levels is at least 0.02 dB higher AND
   the mean PSNR of the CLI edits is no more than 0.02 dB lower (a better denoiser that edits worse is not
   shipped), OR when the CLI edits gain at least 0.02 dB AND the denoising loses at most 0.05 dB (the project's
   margin for "no worse"): edit-aware training (cmtrain.edits) spends a little of the one-step Gaussian denoising on
   the inputs the edits really hand the network, and the CLI's own denoising is one of the edits. A faster
   architecture (`--faster-within DB`, a student of `npm run train -- --student`) is judged
   instead by speed and no loss: at most 0.8x the shipped model's time per call (PyTorch float, 4 tiles of 128x128, one
   thread, the two timed in turn) and at most DB lower on the mean denoising PSNR and on every CLI edit. Only then is models/default.onnx
   replaced, atomically (written beside it, synced, renamed over it), with
   training/results/task_plans.json, and its int8 variant models/default-int8.onnx is made again (cmtrain.quantize).
5. Either way a line is appended to training/results/history.csv (date, machine, steps, crops, hours, cumulative
   CPU-hours, every figure, the decision), and on promotion the model card's generated section (between the
   `history:begin` / `history:end` markers of models/README.md) is rewritten and the run's lineage records the new
   model, so that `npm run train` keeps resuming the same run.
--dry-run measures and prints, and writes nothing but a temporary folder.
"""
import argparse
import csv
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from .card import denoise_psnr
from .continuous import DEFAULT_MODEL, LINEAGE, ROOT, RUN, from_invocation, origin, read_lineage, sha256, write_lineage
from .data import PhotoCrops
from .export import check_task_plans, export_onnx, merge_task_plans, load_checkpoint, load_onnx_weights, metadata, read_metadata
from .train import DEFAULT_DATA, DEFAULT_SELECT, edit_scores, select_specs

SIGMAS = (0.05, 0.1, 0.2, 0.5)
CLI_VARIANTS = ("superres-x2", "superres-x4", "superres-x8", "inpaint-box", "inpaint-strokes", "denoise-25")
DENOISE_MARGIN = 0.02      # dB the candidate's mean denoising PSNR must gain
EDIT_MARGIN = 0.02         # dB its mean CLI edit PSNR may lose; or, the other way round, must gain
DENOISE_LOSS = 0.05        # dB the mean denoising PSNR may lose when the CLI edits gain EDIT_MARGIN
FASTER = 0.8               # a candidate of another architecture must take at most this share of the time per call
HISTORY = os.path.join(ROOT, "training", "results", "history.csv")
TASK_PLANS = os.path.join(ROOT, "training", "results", "task_plans.json")
CARD = os.path.join(ROOT, "models", "README.md")
COLUMNS = (["date", "machine", "model", "sha256", "base", "decision", "run", "step", "crops", "wall_hours", "cpu_hours",
            "cumulative_cpu_hours"] + [f"psnr@{s:g}" for s in SIGMAS] + ["denoise_mean", "edit_score"]
           + [f"cli_{v}" for v in CLI_VARIANTS] + ["cli_mean", "note"])


def machine() -> str:
    """The CPU model, its core count and the vector extensions that matter for speed, e.g. "Intel(R) Xeon(R)
    Processor, 2 cores, AVX512 AMX"."""
    name, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        name = re.search(r"^model name\s*:\s*(.+)$", info, re.M).group(1).strip()
        flags = re.search(r"^flags\s*:\s*(.+)$", info, re.M).group(1).split()
    except (OSError, AttributeError):
        pass
    ext = [n for n, f in (("AVX2", "avx2"), ("AVX512", "avx512f"), ("VNNI", "avx512_vnni"), ("AMX", "amx_bf16"))
           if f in flags]
    return f"{name}, {os.cpu_count()} cores" + (f", {' '.join(ext)}" if ext else "")


def next_name(name: str) -> str:
    m = re.match(r"^(.*?)-(\d+)$", name)
    return f"{m.group(1)}-{int(m.group(2)) + 1}" if m else f"{name}-2"


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_atomically(dest: str, write) -> None:
    """write(tmp) fills a temporary file beside dest, which is synced and renamed over dest: a reader sees the old
    file or the new one, never a half-written one; on any failure the temporary file is removed and dest untouched."""
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", suffix=".tmp", dir=os.path.dirname(dest) or ".")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600): keep the mode of the file it replaces (else 0644 less the umask).
        mode = os.stat(dest).st_mode & 0o777 if os.path.exists(dest) else 0o666 & ~current_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def export_with(model, src_meta: dict, out: str, name: str, task_plans=None) -> None:
    """The model exported with the metadata of the shipped one (its plans, licence, data), renamed."""
    plans = json.loads(src_meta["cm.plans"])
    tp = task_plans if task_plans is not None else json.loads(src_meta["cm.task_plans"]) if src_meta.get("cm.task_plans") else None
    meta = metadata(model, name, src_meta.get("cm.license", ""), src_meta.get("cm.trained_on", ""), plans, tp)
    export_onnx(model, out, meta)


def node_json(args: list, env: dict) -> dict:
    out = subprocess.run(["node", os.path.join(ROOT, "bench", "plansearch.mjs")] + args, env=env, check=True,
                         stdout=subprocess.PIPE, stderr=sys.stderr, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(model, x: torch.Tensor, specs) -> dict:
    out = {f"psnr@{s:g}": denoise_psnr(model, x, s) for s in SIGMAS}
    out["denoise_mean"] = float(np.mean([out[f"psnr@{s:g}"] for s in SIGMAS]))
    out["edit_score"] = edit_scores(model, x, specs)["score"]
    return out


def decide(old: dict, new: dict, within: float = None) -> tuple:
    """(promote?, why): the rule of the module's docstring; with `within` (a faster architecture, e.g. a student), the
    candidate must take at most FASTER of the shipped model's time per call (new["time_ratio"]) and lose at most
    `within` dB on the mean denoising PSNR and on every CLI edit."""
    if within is not None:
        ratio = new.get("time_ratio", 1.0)
        if ratio > FASTER:
            return False, f"{ratio:.2f}x the shipped model's time per call (must be at most {FASTER}x)"
        figures = ["denoise_mean"] + sorted(k for k in old if k.startswith("cli_") and k != "cli_mean")
        worst = min(figures, key=lambda k: new[k] - old[k])
        loss = new[worst] - old[worst]
        why = f"{ratio:.2f}x the time per call; the worst figure {worst} {loss:+.3f} dB"
        return (True, why) if loss >= -within else (False, why + f" (may lose at most {within})")
    gain = new["denoise_mean"] - old["denoise_mean"]
    edits = new["cli_mean"] - old["cli_mean"]
    why = f"denoising {gain:+.3f} dB, CLI edits {edits:+.3f} dB"
    if gain >= DENOISE_MARGIN and edits >= -EDIT_MARGIN:
        return True, why
    if edits >= EDIT_MARGIN and gain >= -DENOISE_LOSS:
        return True, why + " (edits better, denoising within the margin)"
    return False, why + (f" (needs denoising +{DENOISE_MARGIN} with edits at least -{EDIT_MARGIN}, or edits "
                         f"+{EDIT_MARGIN} with denoising at least -{DENOISE_LOSS})")


def gpu_note(ckpt: dict) -> str:
    """A GPU run's checkpoint (cmtrain.gpurun) says where it trained: its minutes are not CPU-hours."""
    if not ckpt.get("gpurun"):
        return ""
    g = ckpt["gpurun"]
    return f"trained on {g['device']} for {ckpt['seconds'] / 60:.1f} min ({ckpt['step']} steps, cmtrain.gpurun); "


def time_ratio(new_model, old_model, tiles: int = 4, size: int = 128, threads: int = 1, repeats: int = 7) -> float:
    """The candidate's median seconds per evaluation of `tiles` tiles of size x size over the shipped model's, in
    PyTorch float on `threads` threads, the two timed in turn (a load that changes meanwhile falls on both)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x, sigma = torch.randn(tiles, 3, size, size), torch.full((tiles,), 0.2)
        times = {"new": [], "old": []}
        with torch.no_grad():
            new_model(x, sigma)
            old_model(x, sigma)
            for _ in range(repeats):
                for key, model in (("new", new_model), ("old", old_model)):
                    t = time.perf_counter()
                    model(x, sigma)
                    times[key].append(time.perf_counter() - t)
        return float(np.median(times["new"]) / np.median(times["old"]))
    finally:
        torch.set_num_threads(old)


def requantize(model: str) -> None:
    """The int8 variant beside a promoted model made again (cmtrain.quantize): the old one was made from the old file,
    so the CLI would no longer use it (cm.quantized_from). If quantizing fails, the stale variant is removed."""
    variant = re.sub(r"\.onnx$", "", model) + "-int8.onnx"
    if not os.path.exists(variant):
        return
    tmp = variant + ".tmp.onnx"
    try:
        subprocess.run([sys.executable, "-m", "cmtrain.quantize", model, tmp], cwd=os.path.join(ROOT, "training"),
                       check=True, stdout=subprocess.DEVNULL)
        os.replace(tmp, variant)
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"{variant}: could not be made again ({e}); removed (the CLI runs the float model)", file=sys.stderr)
        for f in (tmp, variant):
            if os.path.exists(f):
                os.remove(f)


def read_history(path: str) -> list:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_history(path: str, row: dict) -> None:
    new = not os.path.exists(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in row.items()})


def card_section(history: list) -> str:
    """The model card's generated part: the validation figures of every shipped model, oldest first."""
    shipped = [r for r in history if r["decision"] in ("promoted", "initial")]
    lines = ["<!-- history:begin (written by `npm run train:promote`; edit training/cmtrain/promote.py, not this) -->",
             "### Validation history (`training/results/history.csv`)",
             "",
             "Each shipped model on the held-out validation photos: one-step denoising PSNR on 64 fixed 64x64 crops "
             "(sigma in [-1, 1] units: 0.1 = 12.8 and 0.2 = 25.5 grey levels), training's edit score, and the CLI's "
             "own edits with the model's defaults (PSNR, dB). CPU-hours are those of every training run in the "
             "model's lineage.",
             "",
             "| model | date | machine | CPU-hours (cumulative) | crops | " + " | ".join(f"denoise {s:g}" for s in SIGMAS)
             + " | edit score | superres x2 / x4 / x8 | inpaint box / strokes | denoise 25 |",
             "|---|---|---|---|---|" + "---|" * len(SIGMAS) + "---|---|---|---|"]
    for r in shipped:
        f = lambda k: r.get(k, "")
        lines.append(f"| {f('model')} | {f('date')[:10]} | {f('machine')} | {f('cumulative_cpu_hours')} | {f('crops')} | "
                     + " | ".join(f(f"psnr@{s:g}") for s in SIGMAS)
                     + f" | {f('edit_score')} | {f('cli_superres-x2')} / {f('cli_superres-x4')} / {f('cli_superres-x8')}"
                     f" | {f('cli_inpaint-box')} / {f('cli_inpaint-strokes')} | {f('cli_denoise-25')} |")
    lines.append("<!-- history:end -->")
    return "\n".join(lines)


def write_card(path: str, history: list) -> None:
    with open(path) as f:
        text = f.read()
    section = card_section(history)
    pattern = re.compile(r"<!-- history:begin.*?<!-- history:end -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
    replace_atomically(path, lambda tmp: open(tmp, "w").write(text))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m cmtrain.promote", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="default: RUN/best.pt")
    p.add_argument("--run", default=RUN)
    p.add_argument("--model", default=DEFAULT_MODEL, help="the shipped model to compare with and replace")
    p.add_argument("--data", help="training photos (their held-out share is the validation set)")
    p.add_argument("--val-percent", type=float, default=2.0)
    p.add_argument("--crops", type=int, default=64, help="validation crops for denoising and the edit score")
    p.add_argument("--cli-crops", type=int, default=24, help="validation crops for the plan search and CLI edits")
    p.add_argument("--search", default="", help="task variants the plan search covers, comma-separated (default: all; "
                                                 "the other tasks keep the shipped model's plans)")
    p.add_argument("--compare", default=",".join(CLI_VARIANTS), help="CLI edits compared (comma-separated)")
    p.add_argument("--rounds", type=int, default=1, help="refinement rounds of the plan search (default 1: the bounded "
                                                         "fast mode)")
    p.add_argument("--plan-start", default="model", help="where the plan search starts: model (the shipped model's "
                                                         "plans) or a cm.task_plans JSON file")
    p.add_argument("--history", default=HISTORY)
    p.add_argument("--card", default=CARD)
    p.add_argument("--task-plans", default=TASK_PLANS)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--initial", action="store_true", help="only measure the shipped model and write its history line "
                                                          "(the first line of a history)")
    p.add_argument("--initial-cpu-hours", type=float, default=0.0)
    p.add_argument("--initial-crops", type=int, default=0)
    p.add_argument("--initial-steps", type=int, default=0)
    p.add_argument("--note", default="")
    p.add_argument("--faster-within", type=float, metavar="DB",
                   help="for a faster architecture (a student: npm run train -- --student): promote it if it takes at "
                        f"most {FASTER}x the time per call and loses at most DB on mean denoising and on every CLI edit")
    p.add_argument("--name", help="the promoted model's name (default: the shipped one's, one version up)")
    p.add_argument("--dry-run", action="store_true")
    a = p.parse_args(argv)
    for key in ("checkpoint", "run", "model", "data", "history", "card", "task_plans"):
        setattr(a, key, from_invocation(getattr(a, key)))
    if a.plan_start != "model":
        a.plan_start = from_invocation(a.plan_start)
    torch.set_num_threads(a.threads or os.cpu_count() or 1)
    data = a.data or next((d for d in DEFAULT_DATA if os.path.isdir(d)), DEFAULT_DATA[0])
    env = {**os.environ, "CM_TRAIN_DIR": os.path.abspath(data)}
    cli = ["--crops", str(a.cli_crops), "--threads", str(a.threads or os.cpu_count() or 1),
           "--val-percent", f"{a.val_percent:g}"]
    val = PhotoCrops(data, 64, "val", seed=2, val_percent=a.val_percent)     # cmtrain.card's crops
    x = torch.from_numpy(val.batch(a.crops))
    specs = select_specs(json.dumps(DEFAULT_SELECT))
    old_meta = read_metadata(a.model)
    old_model = load_onnx_weights(a.model).eval()
    print(f"measuring the shipped model {old_meta.get('cm.name')} ({a.model})", flush=True)
    old = measure(old_model, x, specs)
    compared = a.compare.split(",")
    old_cli = node_json(["--model", a.model, "--score-only", "--tasks", a.compare] + cli, env)
    for v in compared:
        old[f"cli_{v}"] = old_cli[v]["psnr"]
    old["cli_mean"] = float(np.mean([old[f"cli_{v}"] for v in compared]))
    history = read_history(a.history)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if a.initial:
        row = {"date": now, "machine": machine(), "model": old_meta.get("cm.name", ""), "sha256": sha256(a.model)[:12],
               "base": "", "decision": "initial", "run": "", "step": a.initial_steps, "crops": a.initial_crops,
               "wall_hours": "", "cpu_hours": a.initial_cpu_hours, "cumulative_cpu_hours": a.initial_cpu_hours,
               **old, "note": a.note}
        print(json.dumps(row, indent=1))
        if not a.dry_run:
            append_history(a.history, row)
            write_card(a.card, read_history(a.history))
        return 0

    ckpt_path = a.checkpoint or os.path.join(a.run, "best.pt")
    ckpt = torch.load(ckpt_path, map_location="cpu")
    new_model = load_checkpoint(ckpt_path).eval()
    name = a.name or next_name(old_meta.get("cm.name", "cm"))
    print(f"measuring the candidate {name} ({ckpt_path}, step {ckpt['step']})", flush=True)
    new = measure(new_model, x, specs)
    if a.faster_within is not None:
        new["time_ratio"] = time_ratio(new_model, old_model)
    with tempfile.TemporaryDirectory() as tmp:
        cand = os.path.join(tmp, "candidate.onnx")
        export_with(new_model, old_meta, cand, name)
        plans_path = os.path.join(tmp, "task_plans.json")
        subprocess.run(["node", os.path.join(ROOT, "bench", "plansearch.mjs"), "--model", cand, "--start", a.plan_start,
                        "--rounds", str(a.rounds), "--out", plans_path] + (["--tasks", a.search] if a.search else []) + cli,
                       env=env, check=True, stdout=subprocess.DEVNULL)
        with open(plans_path) as f:
            task_plans = merge_task_plans(json.loads(old_meta.get("cm.task_plans", "{}")), json.load(f))
        check_task_plans(task_plans)
        export_with(new_model, old_meta, cand, name, task_plans)
        new_cli = node_json(["--model", cand, "--score-only", "--tasks", a.compare] + cli, env)
        for v in compared:
            new[f"cli_{v}"] = new_cli[v]["psnr"]
        new["cli_mean"] = float(np.mean([new[f"cli_{v}"] for v in compared]))
        ok, why = decide(old, new, a.faster_within)
        print("\n| figure | shipped | candidate | change |\n|---|---|---|---|")
        for k in old:
            print(f"| {k} | {old[k]:.3f} | {new[k]:.3f} | {new[k] - old[k]:+.3f} |")
        print(f"\n{'PROMOTE' if ok else 'KEEP the shipped model'}: {why}", flush=True)
        shipped_rows = [r for r in history if r["decision"] in ("promoted", "initial")]
        base_cum = float(shipped_rows[-1]["cumulative_cpu_hours"]) if shipped_rows else 0.0
        lineage = read_lineage(a.run)
        # CPU time of the run up to this checkpoint, less what the shipped model already counted (a run that goes on
        # after a promotion promotes again from the same lineage).
        run_cpu = ckpt.get("cpu_seconds", ckpt["seconds"]) / 3600
        counted = float(lineage.get("counted_cpu_hours", 0.0)) if origin(lineage, sha256(a.model)) in lineage.get("promoted", []) else 0.0
        row = {"date": now, "machine": machine(), "model": name, "sha256": "", "base": old_meta.get("cm.name", ""),
               "decision": "promoted" if ok else "refused", "run": os.path.relpath(os.path.abspath(a.run), ROOT),
               "step": ckpt["step"], "crops": ckpt["images"], "wall_hours": ckpt["seconds"] / 3600,
               "cpu_hours": run_cpu - counted, "cumulative_cpu_hours": base_cum + run_cpu - counted,
               **{k: v for k, v in new.items() if k != "time_ratio"}, "note": (a.note + "; " if a.note else "") + gpu_note(ckpt) + why}
        if a.dry_run:
            print("dry run: nothing written")
            return 0
        if ok:
            replace_atomically(a.model, lambda t: shutil.copyfile(cand, t))
            row["sha256"] = sha256(a.model)[:12]
            replace_atomically(a.task_plans, lambda t: open(t, "w").write(json.dumps(task_plans) + "\n"))
            requantize(a.model)
        append_history(a.history, row)
        if ok:
            write_card(a.card, read_history(a.history))
            if lineage:
                lineage.setdefault("promoted", []).append(sha256(a.model))
                lineage["counted_cpu_hours"] = run_cpu
                write_lineage(a.run, lineage)
        print(f"history: {a.history}" + (f"; {a.model} replaced; card: {a.card}" if ok else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
