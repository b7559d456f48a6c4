"""cmtrain.promote: models/default.onnx is replaced only by a better model, and never left half-written."""
import csv
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cmtrain import promote, train
from cmtrain.export import export_onnx, load_checkpoint, metadata, read_metadata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAVE_NODE = shutil.which("node") is not None and os.path.exists(os.path.join(ROOT, "dist", "sampler", "sample.js")) \
    and os.path.isdir(os.path.join(ROOT, "node_modules", "onnxruntime-node"))


def test_replace_atomically_leaves_the_old_file_when_writing_fails(tmp_path):
    dest = tmp_path / "default.onnx"
    dest.write_bytes(b"the shipped model")

    def half_then_fail(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half of a new mo")
        raise OSError("disk full")
    with pytest.raises(OSError):
        promote.replace_atomically(str(dest), half_then_fail)
    assert dest.read_bytes() == b"the shipped model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default.onnx"]     # no temporary file left
    os.chmod(dest, 0o644)
    promote.replace_atomically(str(dest), lambda tmp: open(tmp, "wb").write(b"new"))
    assert dest.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["default.onnx"]
    assert os.stat(dest).st_mode & 0o777 == 0o644       # the replaced file's mode, not mkstemp's private 0600


def test_the_rule():
    old = {"denoise_mean": 30.0, "cli_mean": 25.0}
    assert promote.decide(old, {"denoise_mean": 30.1, "cli_mean": 25.0})[0]
    assert promote.decide(old, {"denoise_mean": 30.1, "cli_mean": 24.99})[0]          # within the edit margin
    assert not promote.decide(old, {"denoise_mean": 30.01, "cli_mean": 25.01})[0]     # neither gains enough
    assert promote.decide(old, {"denoise_mean": 30.01, "cli_mean": 25.03})[0]          # edits gain, denoising kept
    assert promote.decide(old, {"denoise_mean": 29.96, "cli_mean": 25.03})[0]          # edits gain, denoising within
    assert not promote.decide(old, {"denoise_mean": 29.94, "cli_mean": 26.0})[0]       # denoising lost too much
    assert not promote.decide(old, {"denoise_mean": 31.0, "cli_mean": 24.9})[0]       # edits worse
    # A faster architecture (a student): it may lose at most `within` dB on the denoising mean and on every CLI edit.
    old = {"denoise_mean": 30.0, "cli_mean": 25.0, "cli_superres-x4": 26.0, "cli_inpaint-box": 24.0}
    near = {"denoise_mean": 29.97, "cli_mean": 24.98, "cli_superres-x4": 25.96, "cli_inpaint-box": 24.0, "time_ratio": 0.5}
    assert promote.decide(old, near, within=0.05)[0]
    assert not promote.decide(old, near)[0]                                            # the ordinary rule wants a gain
    one_edit = {**near, "cli_inpaint-box": 23.9}                                       # the mean hides one task's loss
    ok, why = promote.decide(old, one_edit, within=0.05)
    assert not ok and "cli_inpaint-box" in why
    assert not promote.decide(old, {**near, "time_ratio": 0.9}, within=0.05)[0]       # not faster
    assert promote.next_name("cm-patch64-small-2") == "cm-patch64-small-3" and promote.next_name("probe") == "probe-2"


def _photos(root, n=16, size=96, seed=0):
    """Smooth gradients with discs and stripes: structure a tiny model learns to denoise in a few dozen steps."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    root.mkdir()
    for i in range(n):
        img = np.stack([g.uniform(-1, 1) * xx + g.uniform(-1, 1) * yy for _ in range(3)], -1) * 0.6
        cy, cx, r = g.uniform(0.2, 0.8, 3)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < (0.3 * r) ** 2] = g.uniform(-1, 1, 3)
        img += 0.2 * np.sin(xx[..., None] * g.uniform(5, 30)) * (g.uniform() < 0.5)
        Image.fromarray(((np.clip(img, -1, 1) + 1) * 127.5).astype(np.uint8)).save(root / f"p{i:02d}.png")
    return root


@pytest.mark.skipif(not HAVE_NODE, reason="needs node, ../node_modules and ../dist (npm install && npm run build)")
def test_a_worse_checkpoint_is_refused_and_a_better_one_promoted(tmp_path):
    data = _photos(tmp_path / "photos")
    run = tmp_path / "run"
    train.main(["--out", str(run), "--data", str(data), "--preset", "tiny", "--crop", "32", "--batch", "8",
                "--threads", "2", "--val-percent", "50", "--val-crop", "64", "--val-crops", "4", "--pretrain-iters",
                "1000", "--loss", "mse", "--p-mean", "-1.5", "--p-std", "1.0", "--lr", "2e-3", "--warmup", "5",
                "--max-steps", "60", "--ckpt-minutes", "100"])
    good = load_checkpoint(str(run / "last.pt"))
    # A broken checkpoint: the trained one with its EMA weights scrambled.
    broken_ckpt = torch.load(run / "last.pt")
    g = torch.Generator().manual_seed(0)
    broken_ckpt["ema"] = {k: (v + 0.3 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v)
                          for k, v in broken_ckpt["ema"].items()}
    torch.save(broken_ckpt, tmp_path / "broken.pt")
    with open(os.path.join(ROOT, "training", "results", "task_plans.json")) as f:
        task_plans = json.load(f)
    shipped = tmp_path / "models" / "default.onnx"
    export_onnx(good, str(shipped), metadata(good, "probe-1", "MIT", "synthetic", {"1": [0, 39], "2": [0, 20, 39]},
                                              task_plans))
    card = tmp_path / "models" / "README.md"
    card.write_text("# probe-1\n\nhand-written text\n")
    history, plans = tmp_path / "history.csv", tmp_path / "task_plans.json"
    common = ["--model", str(shipped), "--data", str(data), "--val-percent", "50", "--crops", "8", "--cli-crops",
              "2", "--history", str(history), "--card", str(card), "--task-plans", str(plans), "--run", str(run),
              "--threads", "2", "--search", "superres-x4,denoise-25", "--compare", "superres-x4,inpaint-box,denoise-25"]
    before = shipped.read_bytes()

    promote.main(common + ["--checkpoint", str(tmp_path / "broken.pt")])
    assert shipped.read_bytes() == before
    assert card.read_text() == "# probe-1\n\nhand-written text\n" and not plans.exists()
    rows = list(csv.DictReader(open(history)))
    assert [r["decision"] for r in rows] == ["refused"]
    assert float(rows[0]["denoise_mean"]) < float(rows[0]["psnr@0.05"])       # a mean of the four levels
    assert "denoising -" in rows[0]["note"]

    # The other way round: the broken model shipped, the trained one proposed.
    bad = load_checkpoint(str(tmp_path / "broken.pt"))
    export_onnx(bad, str(shipped), metadata(bad, "probe-1", "MIT", "synthetic", {"1": [0, 39], "2": [0, 20, 39]},
                                            task_plans))
    promote.main(common + ["--checkpoint", str(run / "last.pt")])
    rows = list(csv.DictReader(open(history)))
    assert [r["decision"] for r in rows] == ["refused", "promoted"]
    meta = read_metadata(str(shipped))
    # the plans searched again are the candidate's own; the other tasks keep the shipped model's
    assert meta["cm.name"] == "probe-2" and json.loads(meta["cm.task_plans"]).keys() == task_plans.keys()
    assert json.loads(meta["cm.task_plans"])["colorize"] == task_plans["colorize"]
    assert json.loads(plans.read_text()) == json.loads(meta["cm.task_plans"])
    assert rows[1]["sha256"] and promote.sha256(str(shipped)).startswith(rows[1]["sha256"])
    text = card.read_text()
    assert text.startswith("# probe-1\n\nhand-written text\n") and "<!-- history:begin" in text and "| probe-2 |" in text
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.endswith(".tmp")]
