"""The prepared GPU run (cmtrain.gpurun) rehearsed on the CPU: crops made on the device are real windows of the photos
with PhotoCrops's distribution and a resumable generator; pack keeps the held-out split and refuses what would not
travel; the run writes small EMA-only checkpoints that promotion and export read."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from cmtrain import gpurun, train
from cmtrain.data import DeviceCrops, PhotoCrops
from cmtrain.export import export_onnx, load_checkpoint, metadata, random_model
from cmtrain.promote import gpu_note



def _tiny_onnx(path):
    """A cm ONNX file of the tiny preset: what --init names (the shipped model, on the device)."""
    model = random_model("tiny", seed=0)
    export_onnx(model, str(path), metadata(model, "probe", "MIT", "synthetic", {"1": [0, 39]}))
    return str(path)


def _photos(root, n=10, seed=0):
    """Photos of distinct random pixels (so a window is found in one place only), two of them 40x52 (every scale)."""
    g = np.random.default_rng(seed)
    for i in range(n):
        h, w = (40, 52) if i < 2 else (20, 28)
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(g.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(sub / f"p{i}.png")
    return root


def _find(window, versions):
    """(version, y, x, flipped) of the one place window comes from, or None."""
    for k, v in enumerate(versions):
        c = window.shape[0]
        for y in range(v.shape[0] - c + 1):
            for x in range(v.shape[1] - c + 1):
                patch = v[y:y + c, x:x + c]
                if np.array_equal(patch, window):
                    return k, y, x, False
                if np.array_equal(patch[:, ::-1], window):
                    return k, y, x, True
    return None


def test_device_crops_are_windows_of_the_photos_with_flips_at_every_scale(tmp_path):
    src = PhotoCrops(str(_photos(tmp_path)), 8, "train", scales=(1, 2, 4), val_percent=0)
    crops = DeviceCrops(src, "cpu", seed=3)
    b = crops.batch(400)
    assert b.shape == (400, 3, 8, 8) and b.dtype == torch.float32
    u8 = ((b + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert torch.allclose(b, torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1)
    found = []
    for win in u8[:120]:
        hit = next(((i,) + h for i, vs in enumerate(src.images) if (h := _find(win, vs)) is not None), None)
        assert hit is not None, "a crop that is no window of any photo"
        found.append(hit)
    photos = {f[0] for f in found}
    assert len(photos) == len(src.images)                       # uniform over photos: all 10 within 120 draws
    assert {f[1] for f in found if f[0] in (0, 1)} == {0, 1, 2}  # the 40x52 photos are cropped at scales 1, 1/2, 1/4
    flips = sum(f[4] for f in found)
    assert 30 < flips < 90                                       # about half flipped
    positions = {(f[0], f[1], f[2], f[3]) for f in found}
    assert any(p[2] > 0 for p in positions) and any(p[3] > 0 for p in positions)


def test_device_crops_resume_from_their_generator_state(tmp_path):
    src = PhotoCrops(str(_photos(tmp_path)), 8, "train", val_percent=0)
    a, b = DeviceCrops(src, "cpu", seed=5), DeviceCrops(src, "cpu", seed=5)
    assert torch.equal(a.batch(16), b.batch(16))
    state = a.rng_state()
    first = a.batch(16)
    assert not torch.equal(first, a.batch(16))
    a.set_rng_state(state)
    assert torch.equal(a.batch(16), first)


def test_pack_keeps_the_names_and_refuses_what_would_not_travel(tmp_path):
    src = _photos(tmp_path / "photos")
    (src / "notes.md").write_text("not a photo")
    dst = tmp_path / "gpu-data"
    size = gpurun.pack(str(src), str(dst), limit=10 * 2 ** 20, tree=1000)
    names = sorted(os.path.relpath(os.path.join(d, f), dst) for d, _, fs in os.walk(dst) for f in fs)
    assert names == sorted(f"{'a' if i % 2 else 'b'}/p{i}.png" for i in range(10))   # same names: same held-out split
    assert size == sum(os.path.getsize(src / n) for n in names)
    held_out = lambda root: PhotoCrops(str(root), 8, "val", val_percent=50).names
    assert held_out(dst) == held_out(src) and 0 < len(held_out(dst)) < 10
    with pytest.raises(SystemExit, match="would not travel together"):
        gpurun.pack(str(src), str(tmp_path / "other"), limit=size + 999, tree=1000)
    assert not (tmp_path / "other").exists()


def test_the_run_returns_small_ema_checkpoints_that_promotion_reads(tmp_path):
    data = _photos(tmp_path / "photos", n=12)
    out = tmp_path / "OUT"
    tiny = ["--batch", "2", "--crop", "16", "--val-crop", "16", "--val-crops", "2", "--val-percent", "50",
            "--max-steps", "3", "--threads", "1", "--ckpt-minutes", "0", "--val-every", "1"]
    rc = gpurun.main(["train", "--out", str(out), "--minutes", "5", "--init", _tiny_onnx(tmp_path / "tiny.onnx"), "--data", str(data),
                      "--work", str(tmp_path / "work"), "--"] + tiny)
    assert rc == 0
    summary = json.loads((out / "out" / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["steps"] == 3 and summary["steps_per_second"] > 0
    assert summary["recipe"][-len(tiny):] == tiny
    for name in ("best.pt", "last.pt"):
        ck = torch.load(out / "out" / name, map_location="cpu")
        assert "opt" not in ck and "model" not in ck and ck["cpu_seconds"] == 0.0
        assert os.path.getsize(out / "out" / name) < os.path.getsize(tmp_path / "work" / name) / 2
        full = torch.load(tmp_path / "work" / name, map_location="cpu")
        for k, v in full["ema"].items():
            assert torch.equal(ck["ema"][k], v), k
        assert load_checkpoint(str(out / "out" / name)) is not None
    ck = torch.load(out / "out" / "last.pt", map_location="cpu")
    assert ck["step"] == 3 and ck["args"]["data_on_device"] and ck["args"]["crop"] == 16
    assert gpu_note(ck).startswith("trained on cpu for ") and "3 steps" in gpu_note(ck)
    assert gpu_note(torch.load(tmp_path / "work" / "last.pt", map_location="cpu")) == ""   # a CPU run's: no note
    for name in ("loss.csv", "val.csv", "select.csv", "config.json"):
        assert (out / "out" / name).exists()


def test_a_run_with_the_photos_on_the_device_resumes_with_the_same_losses(tmp_path):
    """--data-on-device: a run stopped after 2 steps and resumed gives the losses of 4 steps in one go (the crop
    generator's state is in the checkpoint)."""
    data = _photos(tmp_path / "photos", n=12)
    common = ["--data", str(data), "--preset", "tiny", "--crop", "16", "--batch", "2", "--threads", "1",
              "--val-percent", "50", "--val-crop", "16", "--val-crops", "2", "--log-every", "1", "--ckpt-minutes", "0",
              "--minutes", "5", "--data-on-device"]
    train.main(["--out", str(tmp_path / "whole"), "--max-steps", "4"] + common)
    train.main(["--out", str(tmp_path / "parts"), "--max-steps", "2"] + common)
    train.main(["--out", str(tmp_path / "parts"), "--resume", "--max-steps", "4"] + common)
    rows = lambda run: [line.split(",")[:2] + line.split(",")[3:] for line in (run / "loss.csv").read_text().splitlines()]
    assert rows(tmp_path / "parts") == rows(tmp_path / "whole")
    assert len(rows(tmp_path / "whole")) == 5
