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
from cmtrain.export import export_onnx, load_checkpoint, load_onnx_weights, metadata, random_model
from cmtrain.promote import gpu_note



def _tiny_onnx(path, seed=0):
    """A cm ONNX file of the tiny preset: the shipped model, as the tests pack it."""
    model = random_model("tiny", seed=seed)
    export_onnx(model, str(path), metadata(model, "probe", "MIT", "synthetic", {"1": [0, 39]}))
    return str(path)


def _photos(root, n=10, seed=0):
    """Photos of random pixels, two of them 40x52 (cropped at every scale), the others 20x28 (at 1 and 1/2)."""
    g = np.random.default_rng(seed)
    for i in range(n):
        h, w = (40, 52) if i < 2 else (20, 28)
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(g.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(sub / f"p{i}.png")
    return root


def test_device_crops_are_the_windows_drawn(tmp_path):
    """Each crop is the window its draw names (flipped when drawn so), in [-1, 1] as PhotoCrops gives it."""
    src = PhotoCrops(str(_photos(tmp_path)), 8, "train", scales=(1, 2, 4), val_percent=0)
    crops = DeviceCrops(src, "cpu", seed=3)
    state = crops.rng_state()
    photo, version, y0, x0, flip = crops.draw(64)
    crops.set_rng_state(state)
    b = crops.batch(64)
    assert b.shape == (64, 3, 8, 8) and b.dtype == torch.float32
    versions = [v for vs in src.images for v in vs]
    assert flip.any() and (~flip).any()
    for i in range(64):
        assert versions[version[i]] is src.images[photo[i]][version[i] - crops.first[photo[i]]]
        want = versions[version[i]][y0[i]:y0[i] + 8, x0[i]:x0[i] + 8]
        want = want[:, ::-1] if flip[i] else want
        assert torch.equal(b[i], torch.from_numpy(want.copy()).permute(2, 0, 1).float() / 127.5 - 1), i


def test_device_crops_draw_as_photocrops_does(tmp_path):
    """20,000 draws: uniform over photos (not over versions: the two 40x52 photos have 3 each, the others 2), then
    over a photo's versions, then over positions; half of them flipped."""
    src = PhotoCrops(str(_photos(tmp_path)), 8, "train", scales=(1, 2, 4), val_percent=0)
    crops = DeviceCrops(src, "cpu", seed=7)
    n = 20000
    photo, version, y0, x0, flip = crops.draw(n)
    share = torch.bincount(photo, minlength=10).double() / n
    assert (share - 0.1).abs().max() < 0.012                     # 4.5 standard deviations
    big = [p for p, vs in enumerate(src.images) if len(vs) == 3]
    assert len(big) == 2
    for p in big:
        per = torch.bincount(version[photo == p] - crops.first[p], minlength=3).double() / (photo == p).sum()
        assert (per - 1 / 3).abs().max() < 0.04
    assert abs(flip.double().mean().item() - 0.5) < 0.015
    # positions: the 40x52 photo at scale 1 has 33 x 45 of them, each about equally often
    at = (photo == big[0]) & (version == crops.first[big[0]])
    assert y0[at].min() == 0 and y0[at].max() == 32 and x0[at].min() == 0 and x0[at].max() == 44
    assert abs(y0[at].double().mean().item() - 16) < 1.5 and abs(x0[at].double().mean().item() - 22) < 2


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
    model = _tiny_onnx(tmp_path / "tiny.onnx")
    size = gpurun.pack(str(src), str(dst), model=model, limit=10 * 2 ** 20, tree=1000)
    names = sorted(os.path.relpath(os.path.join(d, f), dst) for d, _, fs in os.walk(dst) for f in fs)
    assert names == sorted([f"{'a' if i % 2 else 'b'}/p{i}.png" for i in range(10)] + ["init.pt"])  # same split
    assert size == sum(os.path.getsize(dst / n) for n in names)
    init = torch.load(dst / "init.pt")
    assert init["sha256"] == gpurun.sha256(model)
    want = load_onnx_weights(model).state_dict()
    assert all(torch.equal(init["state_dict"][k], v) for k, v in want.items()) and init["state_dict"].keys() == want.keys()
    held_out = lambda root: PhotoCrops(str(root), 8, "val", val_percent=50).names
    assert held_out(dst) == held_out(src) and 0 < len(held_out(dst)) < 10
    with pytest.raises(SystemExit, match="would not travel together"):
        gpurun.pack(str(src), str(tmp_path / "other"), model=model, limit=size + 999, tree=1000)
    assert not (tmp_path / "other").exists() and sorted(os.listdir(tmp_path)) == ["gpu-data", "photos", "tiny.onnx"]


def test_the_run_returns_small_ema_checkpoints_that_promotion_reads(tmp_path, monkeypatch):
    """pack here, then the run: it reads the packed weights and exports no ONNX (another torch's exporter names a
    probe's initializers otherwise), and what it returns is EMA weights only, which promotion and export read."""
    data = _photos(tmp_path / "photos", n=12)
    model = _tiny_onnx(tmp_path / "tiny.onnx")
    gpurun.pack(str(data), str(tmp_path / "gpu-data"), model=model, tree=0)
    out = tmp_path / "OUT"
    tiny = ["--batch", "2", "--crop", "16", "--val-crop", "16", "--val-crops", "2", "--val-percent", "50",
            "--max-steps", "3", "--threads", "1", "--ckpt-minutes", "0", "--val-every", "1"]

    other = _tiny_onnx(tmp_path / "other.onnx", seed=1)

    def no_export(*args, **kwargs):
        raise AssertionError("the GPU run exported an ONNX file")
    monkeypatch.setattr(torch.onnx, "export", no_export)
    monkeypatch.setattr(gpurun, "MODEL", model)
    with pytest.raises(SystemExit, match="packed from another model"):      # the shipped model is another one
        gpurun.run_training(str(out), 5, str(tmp_path / "gpu-data"), str(tmp_path / "work"), tiny,
                            model=other)
    rc = gpurun.main(["train", "--out", str(out), "--minutes", "5", "--data", str(tmp_path / "gpu-data"),
                      "--work", str(tmp_path / "work"), "--"] + tiny)
    monkeypatch.undo()
    assert rc == 0
    summary = json.loads((out / "out" / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["steps"] == 3 and summary["steps_per_second"] > 0
    assert summary["init_sha256"] == gpurun.sha256(model)
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


def test_the_deadline_counts_from_the_start_and_the_files_still_come_back(tmp_path):
    """--minutes is a deadline from the command's start (set-up included): one already past trains no step, and the
    last validation's checkpoints still come back."""
    data = _photos(tmp_path / "photos", n=12)
    gpurun.pack(str(data), str(tmp_path / "gpu-data"), model=_tiny_onnx(tmp_path / "tiny.onnx"), tree=0)
    tiny = ["--batch", "2", "--crop", "16", "--val-crop", "16", "--val-crops", "2", "--val-percent", "50",
            "--threads", "1"]
    summary = gpurun.run_training(str(tmp_path / "OUT"), 0.01, str(tmp_path / "gpu-data"), str(tmp_path / "work"),
                                  tiny, started=0.0, model=str(tmp_path / "tiny.onnx"))
    assert summary["steps"] == 0
    assert torch.load(tmp_path / "OUT" / "out" / "best.pt")["step"] == 0
    assert (tmp_path / "OUT" / "out" / "last.pt").exists()


def test_a_run_resumed_with_the_other_crop_source_is_refused_in_one_line(tmp_path):
    data = _photos(tmp_path / "photos", n=12)
    common = ["--data", str(data), "--preset", "tiny", "--crop", "16", "--batch", "2", "--threads", "1",
              "--val-percent", "50", "--val-crop", "16", "--val-crops", "2", "--ckpt-minutes", "0", "--minutes", "5"]
    train.main(["--out", str(tmp_path / "run"), "--max-steps", "1"] + common)
    with pytest.raises(SystemExit, match="started without --data-on-device: resume it the same way"):
        train.main(["--out", str(tmp_path / "run"), "--resume", "--max-steps", "2", "--data-on-device"] + common)
