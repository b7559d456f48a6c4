"""The consistency function f(x, sigma) of ALGORITHMS.md section 2, scalings included.

  f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))
  c_skip  = sd^2 / ((sigma - eps)^2 + sd^2)
  c_out   = (sigma - eps) sd / sqrt(sigma^2 + sd^2)
  c_in    = 1 / sqrt(sigma^2 + sd^2)                 (sigma, not sigma - eps)
  c_noise = 0.25 ln(sigma)

At sigma = eps (float32 0.002), sigma - eps is exactly 0, so c_skip = 1 and c_out = 0
exactly and f(x, eps) == x bit for bit (F is finite). No clamp here: the sampler clamps.
"""
import torch
import torch.nn as nn

from .unet import UNet, UNetConfig

SIGMA_MIN = 0.002
SIGMA_MAX = 80.0
SIGMA_DATA = 0.5
RHO = 7.0


def scalings(sigma: torch.Tensor, sigma_min: float, sigma_data: float):
    """c_skip, c_out, c_in for a batch of noise levels [N], shaped [N,1,1,1] to scale images."""
    sd = sigma_data
    s = sigma.reshape(-1, 1, 1, 1)
    s_eps = s - sigma_min
    c_skip = sd * sd / (s_eps * s_eps + sd * sd)
    c_out = s_eps * sd / torch.sqrt(s * s + sd * sd)
    c_in = 1.0 / torch.sqrt(s * s + sd * sd)
    return c_skip, c_out, c_in


class ConsistencyModel(nn.Module):
    def __init__(self, cfg: UNetConfig, sigma_min: float = SIGMA_MIN, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.net = UNet(cfg)
        self.sigma_min = sigma_min
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        c_skip, c_out, c_in = scalings(sigma, self.sigma_min, self.sigma_data)
        c_noise = 0.25 * torch.log(sigma)
        return c_skip * x + c_out * self.net(c_in * x, c_noise).to(x.dtype)


def check_plans(plans: dict, grid: int) -> None:
    """A plan for k evaluations lists k+1 strictly increasing grid indices ending at grid-1."""
    if not isinstance(plans, dict):
        raise ValueError(f"Expected an object of evaluations -> grid indices but received {plans}")
    for k, ts in plans.items():
        ok = (str(k).isdigit() and len(ts) == int(k) + 1 and all(isinstance(t, int) for t in ts)
              and ts[0] >= 0 and ts[-1] == grid - 1 and all(a < b for a, b in zip(ts, ts[1:])))
        if not ok:
            raise ValueError(f"Expected plan {k} to list {k}+1 strictly increasing indices ending at {grid - 1} "
                             f"but received {ts}")
