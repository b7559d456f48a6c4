"""The prepared GPU training run (TRAINING.md; issue 16): one command, the same here and on the lent GPU.

When a session is lent a GPU (`device` status at its start), this run comes first:

  1. here:        /usr/bin/python3 -m cmtrain.gpurun pack        (from training/: the photos into training/gpu-data/)
  2. the device:  run(command="sh training/gpu-run.sh", carry=["training/gpu-data"], timeout_s=570)
  3. here:        cp -r FILES_AT/out training/runs/gpu-DATE && npm run train:promote -- --run training/runs/gpu-DATE

training/gpu-run.sh calls `python3 -m cmtrain.gpurun train --out $OUT`: it trains the shipped model (its weights as
`pack` saved them here, gpu-data/init.pt: reading an ONNX file exports a probe, and the initializer names of another
torch's exporter would not match; fresh optimiser) with the CPU run's recipe (cmtrain.continuous: EDM-weighted denoising, the
shipped model's own answers as the target from sigma 2 up) but on 64x64 crops in batches of 256 with the photos on
the GPU (cmtrain.data.DeviceCrops), bf16 autocast, until --minutes after it started, set-up included (6.5: the
device lends 15 minutes in all, a command at most 10, and its start counts). Validation and best.pt are the CPU run's
(train.py). What comes back under $OUT/out is small (the device returns files of at most 16 MiB): best.pt and last.pt
hold the EMA weights only (7 MB for the small preset), with the step, crops and seconds promotion records, written
there at every checkpoint (a run stopped at the command's limit still returns its last ones), and the run's logs and
a summary.json (device, torch, steps per second). promote.py then compares best.pt with the shipped model on the CPU,
as for any run. After a promotion the shipped model is another: the next `npm run train` sets the current run's
folder aside (runs/NAME.1) and starts it again from the new model (a student is distilled again from it).

Rehearse it on the CPU with the same command before a GPU is lent (it picks the python3 that has torch):
  OUT=/tmp/gpu-rehearsal CM_GPU_MINUTES=0.3 sh training/gpu-run.sh
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from .continuous import DEFAULT_MODEL as MODEL, HERE, ROOT, sha256

STARTED = time.time()      # the command's start: --minutes counts from here (imports and set-up included)
DATA = os.path.join(HERE, "gpu-data")
# What travels to the device: the working tree and the carried photos together, at most 64 MiB; kept under this.
TRAVEL_LIMIT = 60 * 2 ** 20
# The GPU recipe: the CPU run's (cmtrain.continuous.RECIPE) with bigger crops and batches, the photos on the device.
GPU_RECIPE = ["--crop", "64", "--batch", "256", "--lr", "3e-4", "--warmup", "100", "--pretrain-iters", "100000000",
              "--loss", "mse", "--p-mean", "-1.2", "--p-std", "1.5", "--anchor-above", "2.0", "--dropout", "0",
              "--edit-mix", "0.15", "--edit-scale", "0.5", "--ckpt-minutes", "2", "--val-every", "200", "--data-on-device"]
# Returned next to best.pt and last.pt.
LOGS = ("loss.csv", "val.csv", "select.csv", "config.json")
# The shipped model's weights in the packed folder (export.save_weights).
INIT = "init.pt"


def tree_bytes(root: str = ROOT) -> int:
    """Bytes of what the device copies without being told: tracked files and untracked ones git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         check=True, capture_output=True).stdout.decode()
    return sum(os.path.getsize(os.path.join(root, p)) for p in out.split("\0") if p and os.path.isfile(os.path.join(root, p)))


def pack(src: str, dst: str = DATA, model: str = MODEL, limit: int = TRAVEL_LIMIT, tree: int = None) -> int:
    """Copy the photos under src (training and held-out alike: the split is by name) into dst, an ignored folder that
    the device call carries, with the weights of `model` as dst/init.pt (export.save_weights); refuse when the tree
    and these would not travel together. Returns dst's bytes."""
    from .data import EXTENSIONS, list_photos
    from .export import load_onnx_weights, save_weights
    photos = list_photos(src)
    if not photos:
        raise SystemExit(f"{src}: no photos ({', '.join(EXTENSIONS)})")
    fd, weights = tempfile.mkstemp(suffix=".pt")
    os.close(fd)
    save_weights(load_onnx_weights(model), weights, source=os.path.relpath(model, ROOT), sha256=sha256(model))
    size = sum(os.path.getsize(os.path.join(src, p)) for p in photos) + os.path.getsize(weights)
    tree = tree_bytes() if tree is None else tree
    if tree + size > limit:
        os.remove(weights)
        raise SystemExit(f"{dst}: the photos and weights ({size / 2**20:.1f} MiB) and the working tree "
                         f"({tree / 2**20:.1f} MiB) would not travel together (at most {limit / 2**20:.0f} MiB)")
    if os.path.exists(dst):
        shutil.rmtree(dst)
    for p in photos:
        os.makedirs(os.path.dirname(os.path.join(dst, p)), exist_ok=True)
        shutil.copyfile(os.path.join(src, p), os.path.join(dst, p))
    shutil.move(weights, os.path.join(dst, INIT))
    return size


def slim(ck: dict, dst: str, extra: dict) -> None:
    """A checkpoint with the EMA weights only (on the CPU, float32) and what promotion reads: small enough to come back
    from the device. It cannot be resumed (no optimiser state): the CPU continues from the promoted model."""
    import torch
    keep = {k: ck[k] for k in ("config", "args", "step", "stage", "images", "seconds", "best_score", "score_kind")
            if k in ck}
    keep["ema"] = {k: v.float().cpu() for k, v in ck["ema"].items()}
    keep["cpu_seconds"] = 0.0      # no CPU-hours: the history counts the GPU minutes in its note (see promote.py)
    keep.update(extra)
    torch.save(keep, dst + ".tmp")
    os.replace(dst + ".tmp", dst)


def run_training(out: str, minutes: float, data: str, work: str, extra: list, started: float = None,
                 model: str = MODEL) -> dict:
    """Train from data/init.pt until `minutes` after `started` (default now), then the final validation; every
    checkpoint is made small into out/out/ as soon as it is written. Refused at once when init.pt was packed from
    another model than `model` (the shipped one, in the tree that travelled with it)."""
    import torch
    from . import train
    started = time.time() if started is None else started
    init = os.path.join(data, INIT)
    if not os.path.isfile(init):
        raise SystemExit(f"{init}: missing: run `python3 -m cmtrain.gpurun pack` here first and carry {data}")
    init_info = torch.load(init, map_location="cpu")
    if os.path.exists(model) and init_info.get("sha256") != sha256(model):
        raise SystemExit(f"{init}: packed from another model than {os.path.relpath(model, ROOT)}: run "
                         "`python3 -m cmtrain.gpurun pack` again")
    cuda = torch.cuda.is_available()
    # cudnn.benchmark stays off: the anchor's share of each batch changes size every step, and every new shape would
    # be tuned again.
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"gpurun: torch {torch.__version__}, device {device}, until {minutes:g} min after the start", flush=True)
    if os.path.exists(work):
        shutil.rmtree(work)
    dest = os.path.join(out, "out")
    os.makedirs(dest, exist_ok=True)
    summary = {"device": device, "torch": str(torch.__version__), "init": init_info.get("source"),
               "init_sha256": init_info.get("sha256"), "minutes": minutes,
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "recipe": GPU_RECIPE + extra}

    def returned(path: str, ck: dict) -> None:
        """A checkpoint just written (its contents ck): its small copy and the logs into dest, with the figures so far."""
        summary.update(steps=ck["step"], crops=ck["images"], wall_seconds=round(time.time() - started, 1),
                       # validations included: what a step costs in this run, not the GPU's peak
                       steps_per_second=round(ck["step"] / max(ck["seconds"], 1e-9), 3))
        slim(ck, os.path.join(dest, os.path.basename(path)), {"device": device, "gpurun": dict(summary)})
        for name in LOGS:
            if os.path.exists(os.path.join(work, name)):
                shutil.copyfile(os.path.join(work, name), os.path.join(dest, name))
        with open(os.path.join(dest, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)

    train.main(["--out", work, "--init-onnx", init, "--anchor-onnx", init, "--data", data, "--minutes", "1e6",
                "--stop-at", f"{started + minutes * 60:.3f}"] + GPU_RECIPE + extra, on_checkpoint=returned)
    print(f"gpurun: {summary['steps']} steps, {summary['steps_per_second']} steps/s; results in {dest}", flush=True)
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m cmtrain.gpurun", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="copy the training photos into training/gpu-data/ (ignored; carried to the device)")
    pk.add_argument("--data", help="the photos (default: ../shared/data/train beside the repository)")
    tr = sub.add_parser("train", help="train on this machine's GPU (or its CPU: the rehearsal) and write $OUT/out/")
    tr.add_argument("--out", default=os.environ.get("OUT"), help="where the results go (default: $OUT)")
    tr.add_argument("--minutes", type=float, default=6.5,
                    help="training stops this long after the command started, set-up and validations included; the "
                         "last validation follows (default 6.5)")
    tr.add_argument("--data", default=DATA, help="the packed folder: photos and init.pt (the model trained further)")
    tr.add_argument("--work", default=os.path.join("/tmp", "cm-gpurun"), help="the full checkpoints (not returned)")
    tr.add_argument("extra", nargs="*", help="more cmtrain.train flags, after -- (tests: a tiny batch)")
    a = p.parse_args(argv)
    if a.cmd == "pack":
        from .train import DEFAULT_DATA
        src = a.data or next((d for d in DEFAULT_DATA if os.path.isdir(d)), DEFAULT_DATA[0])
        size = pack(src)
        print(f"{DATA}: {size / 2**20:.1f} MiB of photos and weights; on the device: "
              f'run(command="sh training/gpu-run.sh", carry=["training/gpu-data"], timeout_s=570)')
        return 0
    if not a.out:
        p.error("train: --out or $OUT is needed")
    run_training(os.path.abspath(a.out), a.minutes, os.path.abspath(a.data), os.path.abspath(a.work), a.extra,
                 started=STARTED, model=MODEL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
