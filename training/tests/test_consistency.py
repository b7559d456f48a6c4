import torch

from cmtrain.consistency import SIGMA_MIN
from cmtrain.export import random_model


def test_boundary_condition_is_exact():
    model = random_model("tiny", seed=3)
    x = torch.randn(3, 3, 32, 32) * 2
    sigma = torch.tensor([SIGMA_MIN, 1.0, SIGMA_MIN])
    with torch.no_grad():
        y = model(x, sigma)
    assert torch.equal(y[0], x[0]) and torch.equal(y[2], x[2])
    assert (y[1] - x[1]).abs().max() > 1e-2          # the network does act away from the boundary


def test_fully_convolutional_sizes():
    model = random_model("tiny", seed=0)
    with torch.no_grad():
        for h, w in [(16, 16), (32, 48), (64, 128)]:
            assert model(torch.randn(1, 3, h, w), torch.tensor([5.0])).shape == (1, 3, h, w)
