import numpy as np
import pytest
import torch

from cmtrain.evaluate import (InpaintOp, Noise, SuperresOp, Tasks, box_down, centre_hole, harmonic_fill,
                              karras_sigma, patchmean_up, psnr, sample, to_tensor, to_uint8)
from cmtrain.export import random_model
from cmtrain.plansearch import coarse_candidates, neighbours


def test_karras_grid_check_values():
    # ALGORITHMS.md section 1, N = 40
    for i, s in [(0, 80.0), (16, 5.38), (17, 4.3656), (18, 3.5197), (20, 2.2404), (22, 1.3824), (39, 0.002)]:
        assert karras_sigma(i) == pytest.approx(s, rel=1e-3)


def test_harmonic_fill_reproduces_a_discrete_harmonic_function():
    # x^2 - y^2, xy and linear terms have a zero 4-neighbour discrete Laplacian: the fill must be exact.
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64)
    f = (xx ** 2 - yy ** 2) / 50 + 0.3 * xx * yy / 10 + 2 * xx - yy + 7
    img = np.stack([f, -f, 0 * f + 3], axis=-1)[None].repeat(2, axis=0)
    hole = centre_hole(32, 12)
    corrupted = img.copy()
    corrupted[:, hole] = 1e6
    out = harmonic_fill(corrupted, hole)
    np.testing.assert_allclose(out, img, atol=1e-8)


def test_harmonic_fill_solves_laplace_and_keeps_known_pixels():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, size=(1, 16, 16, 3))
    hole = np.zeros((16, 16), dtype=bool)
    hole[3:9, 5:13] = True
    hole[0:2, 0:3] = True            # at the image border: only in-image neighbours count
    out = harmonic_fill(img, hole)
    np.testing.assert_array_equal(out[:, ~hole], img[:, ~hole])
    p = np.pad(out[0], ((1, 1), (1, 1), (0, 0)), mode="edge")   # edge padding = neighbour missing (Neumann)
    lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * out[0]
    assert np.abs(lap[hole]).max() < 1e-8
    assert out[:, hole].min() >= img.min() and out[:, hole].max() <= img.max()   # maximum principle


def test_psnr_and_uint8_round_trip():
    a = np.full((2, 8, 8, 3), 100, np.uint8)
    b = a.copy()
    b[0] += 10
    b[1, :4] += 10
    np.testing.assert_allclose(psnr(a, b), [10 * np.log10(255 ** 2 / 100), 10 * np.log10(255 ** 2 / 50)])
    region = np.zeros((8, 8), bool)
    region[:4] = True
    np.testing.assert_allclose(psnr(a, b, region)[1], 10 * np.log10(255 ** 2 / 100))
    u = np.random.default_rng(1).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(to_tensor(u)), u)


def test_superres_projection_is_idempotent_and_keeps_patch_means():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    op = SuperresOp(y, 4)
    x = torch.randn(2, 3, 16, 16, generator=g) * 2
    px = op.project(x)
    torch.testing.assert_close(op.project(px), px)
    torch.testing.assert_close(patchmean_up(px, 4), patchmean_up(y, 4))
    r = op.project_in_range(x)            # in range, patch means kept (feasible since y is in range)
    assert r.min() >= -1 and r.max() <= 1
    torch.testing.assert_close(patchmean_up(r, 4), patchmean_up(y, 4), atol=1e-6, rtol=0)
    inside = op.project((x * 0.05).clamp(-0.5, 0.5))   # already in range and consistent: unchanged
    torch.testing.assert_close(op.project_in_range(inside), inside, atol=1e-6, rtol=0)


@pytest.mark.parametrize("ts", [[0, 39], [0, 22, 39], [0, 10, 30, 39]])
def test_sampler_keeps_known_data(ts):
    model = random_model("tiny", seed=1)
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    y = to_tensor(crops)
    hole = centre_hole(32, 12)
    ip = InpaintOp(y, torch.from_numpy(hole.astype(np.float32)))
    out = ip.project_in_range(sample(model, ip, ts, Noise(y.shape, 0)))
    assert torch.equal(out[:, :, ~torch.from_numpy(hole)], y[:, :, ~torch.from_numpy(hole)])   # bit for bit
    assert not torch.equal(out, y)
    np.testing.assert_array_equal(to_uint8(out)[:, ~hole], crops[:, ~hole])

    low = box_down(crops, 4)
    up = to_tensor(np.repeat(np.repeat(low, 4, axis=1), 4, axis=2))
    sr = SuperresOp(up, 4)
    x = sr.project_in_range(sample(model, sr, ts, Noise(y.shape, 0)))
    assert x.min() >= -1 and x.max() <= 1
    torch.testing.assert_close(patchmean_up(x, 4), patchmean_up(up, 4), atol=1e-5, rtol=0)
    assert np.abs(box_down(to_uint8(x), 4).astype(int) - low.astype(int)).max() <= 1


def test_prefix_cache_and_seeds_are_exact():
    model = random_model("tiny", seed=1)
    crops = np.random.default_rng(3).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    t = Tasks(crops, seed=0)
    first = t.run(model, [0, 12, 39])
    t.run(model, [0, 12, 30, 39])              # fills the cache with other plans sharing the prefix
    again = t.run(model, [0, 12, 39])
    fresh = Tasks(crops, seed=0).run(model, [0, 12, 39], keep_cache=False)
    other = Tasks(crops, seed=5).run(model, [0, 12, 39], keep_cache=False)
    for k in ("superres", "inpaint"):
        np.testing.assert_array_equal(first[k], again[k])
        np.testing.assert_array_equal(first[k], fresh[k])
        assert not np.array_equal(first[k], other[k])


def test_plan_candidates_are_valid():
    for k in (1, 2, 3, 4):
        for ts in coarse_candidates(k):
            assert len(ts) == k + 1 and ts[0] == 0 and ts[-1] == 39 and all(a < b for a, b in zip(ts, ts[1:]))
    n = list(neighbours((0, 1, 2, 39)))
    assert n and all(t[0] == 0 and t[-1] == 39 and all(a < b for a, b in zip(t, t[1:])) for t in n)
