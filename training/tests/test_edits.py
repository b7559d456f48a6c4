import json
import os
import shutil
import subprocess

import pytest
import torch

from cmtrain.edits import TASKS, LUMA, _superres_mats, edit_shift, gray_start, quantize, superres_start

HERE = os.path.dirname(os.path.abspath(__file__))
DIST = os.path.join(HERE, "..", "..", "dist", "editing", "superres.js")


def photo(n=4, h=32, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth plus detail, in [-1, 1]: something like a photo, not only noise
    base = torch.nn.functional.interpolate(torch.rand(n, 3, h // 8, w // 8, generator=g), size=(h, w), mode="bilinear",
                                           align_corners=False)
    return (base * 1.6 - 0.8 + 0.2 * torch.rand(n, 3, h, w, generator=g)).clamp(-1, 1)


@pytest.mark.parametrize("p", [2, 4, 8])
def test_superres_start_keeps_the_8bit_means_exactly(p):
    x = photo()
    s = superres_start(x, p)
    bh, bw = _superres_mats(32, p)[0], _superres_mats(40, p)[0]
    low = quantize(bh @ x @ bw.T)
    assert (bh @ s @ bw.T - low).abs().max() < 1e-5
    # the start is not the photo (the detail inside the patches is the model's to add) and is closer than the means
    nearest = torch.nn.functional.interpolate(low, scale_factor=p, mode="nearest")
    assert 1e-4 < (s - x).pow(2).mean() < (nearest - x).pow(2).mean()


@pytest.mark.skipif(not os.path.exists(DIST) or shutil.which("node") is None, reason="needs node and dist/ (npm run build)")
def test_superres_start_is_the_clis(tmp_path):
    """Training shows the network the very start the CLI's sampler makes (src/editing/superres.ts)."""
    x = photo(n=1, h=16, w=24, seed=3)
    p = 4
    bh, bw = _superres_mats(16, p)[0], _superres_mats(24, p)[0]
    low = quantize(bh @ x @ bw.T)
    (tmp_path / "low.json").write_text(json.dumps(low.flatten().tolist()))
    subprocess.run(["node", os.path.join(HERE, "superres_start.mjs"), "1,3,16,24", str(p), str(tmp_path / "low.json"),
                    str(tmp_path / "out.json")], check=True)
    cli = torch.tensor(json.loads((tmp_path / "out.json").read_text())).view(1, 3, 16, 24)
    assert (superres_start(x, p) - cli).abs().max() < 1e-5


def test_gray_start_keeps_the_luminance_and_has_no_chroma():
    x = photo()
    g = gray_start(x)
    w = torch.tensor(LUMA).view(1, 3, 1, 1)
    assert ((g * w).sum(1) - (x * w).sum(1)).abs().max() < 1e-6
    assert (g[:, 0] - g[:, 1]).abs().max() == 0 and (g[:, 1] - g[:, 2]).abs().max() == 0


def test_edit_shift_only_for_the_chosen_share_under_the_level():
    x = photo(n=400, h=16, w=16)
    torch.manual_seed(0)
    low_t = torch.full((400,), 0.1)
    assert edit_shift(x, low_t, 0.0, 1.0).abs().max() == 0
    assert edit_shift(x, torch.full((400,), 2.0), 1.0, 1.0).abs().max() == 0       # above --edit-below
    shifted = edit_shift(x, low_t, 0.3, 1.0).flatten(1).abs().amax(1) > 0
    assert 0.2 < shifted.float().mean() < 0.4
    # every crop is shifted towards one of the tasks' starts: all of them appear
    all_shift = edit_shift(x, low_t, 1.0, 1.0, scale=1e9)     # uncapped
    colorized = [(all_shift[i] - (gray_start(x[i:i + 1])[0] - x[i])).abs().max() < 1e-6 for i in range(400)]
    assert 0.15 < sum(colorized) / 400 < 0.35 and len(TASKS) == 4


def test_edit_shift_is_deterministic_under_the_seed():
    x = photo(n=16, h=16, w=16)
    torch.manual_seed(5)
    a = edit_shift(x, torch.full((16,), 0.1), 0.5, 1.0)
    torch.manual_seed(5)
    b = edit_shift(x, torch.full((16,), 0.1), 0.5, 1.0)
    assert torch.equal(a, b)


def test_edit_shift_is_capped_by_the_noise_level():
    x = photo(n=64, h=16, w=16)
    torch.manual_seed(1)
    t = torch.rand(64) * 0.2
    shift = edit_shift(x, t, 1.0, 1.0, 0.5)
    rms = shift.pow(2).flatten(1).mean(1).sqrt()
    assert (rms <= 0.5 * t + 1e-6).all() and (rms > 0).all()
