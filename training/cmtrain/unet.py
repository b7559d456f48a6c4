"""A small fully convolutional UNet conditioned on the noise level.

Layout (L = len(mults) levels, resolution halves between levels):
  conv_in -> [level 0: N res blocks] -down-> [level 1] -down-> ... [level L-1]
          -> middle: res block, (self-attention), res block
          -> [level L-1] -up-> ... [level 0] (each decoder level concatenates the
             encoder output of the same level, then runs N res blocks)
          -> GroupNorm, SiLU, conv_out (3 channels)
H and W must be multiples of 2^(L-1). Nothing depends on the image size, so a net
trained on 32x32 crops runs at 64x64 and beyond.
"""
import math
from dataclasses import asdict, dataclass
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class UNetConfig:
    channels: int = 32              # base width
    mults: Tuple[float, ...] = (1, 2, 2)   # width of each level in channels; a fraction for a narrow level
    blocks: int = 1                 # residual blocks per level (encoder and decoder each)
    attention: bool = True          # single-head self-attention at the lowest resolution
    dropout: float = 0.0
    in_channels: int = 3
    # Space-to-depth factor: 2 runs the whole UNet at half resolution on the 4 * in_channels sub-images of the input
    # (pixel unshuffle, as FFDNet does) and puts the output back with a pixel shuffle: about half the work per pixel.
    unshuffle: int = 1
    # True: each upsampling convolution maps to the finer level's width (not its own), so that a narrow
    # full-resolution level (mults[0] < 1) gets no wide full-resolution tensors.
    narrow_up: bool = False

    def to_json_dict(self):
        d = asdict(self)
        d["mults"] = list(self.mults)
        for k in ("unshuffle", "narrow_up"):
            if d[k] == UNetConfig.__dataclass_fields__[k].default:
                del d[k]   # files of the plain UNet keep the metadata they always had
        return d


PRESETS = {
    # Random-weight test model: exercises every path, weighs a few hundred kB.
    "tiny": UNetConfig(channels=16, mults=(1, 2, 2), blocks=1, attention=True),
    # tiny's students (cmtrain.student), for tests.
    "tiny-s2d": UNetConfig(channels=16, mults=(2, 2), blocks=1, attention=True, unshuffle=2),
    "tiny-thin": UNetConfig(channels=16, mults=(0.5, 2, 2), blocks=1, attention=True, narrow_up=True),
    # The default CPU-trained model: 1.75M parameters, 7 MB ONNX, ~15 ms per 64x64 evaluation (2 threads),
    # ~27 images/s of 32x32 training on one CPU thread. Measurements in training/README.md.
    "small": UNetConfig(channels=32, mults=(1, 2, 2, 2), blocks=2, attention=True, dropout=0.1),
    # Near the 16 MiB limit (3.93M parameters, 15.1 MiB, ~29 ms): for a longer (GPU) run.
    "medium": UNetConfig(channels=48, mults=(1, 2, 2, 2), blocks=2, attention=True, dropout=0.1),
    # small with a 16-channel full-resolution level (half of small's, and the upsampling into it narrow too): 0.62x the
    # int8 call; its lower levels are small's, so it starts from a small model's weights (cmtrain.student). The current
    # run (training/current-run.json, bench/results/student.md).
    "small-thin": UNetConfig(channels=32, mults=(0.5, 2, 2, 2), blocks=2, attention=True, dropout=0.0, narrow_up=True),
    # small's three lower levels on the 2x2 sub-images (no full-resolution level): same multiple of 8, 0.36x the int8
    # call; starts from a small model's weights (cmtrain.student). Distilled for an hour (2026-12-07) it denoised
    # within 1.3 dB of small but its superres x2 stayed 3.2 dB under (bench/results/student.md): not shipped.
    "small-s2d": UNetConfig(channels=32, mults=(2, 2, 2), blocks=2, attention=True, dropout=0.0, unshuffle=2),
}


class Norm(nn.GroupNorm):
    """GroupNorm that always normalises in float32: under CPU bfloat16 autocast (cmtrain.train --bf16), torch 1.13's
    group_norm refuses a bfloat16 input with float32 weights, and the statistics want float32 anyway. A float32 input
    takes the plain path, so the exported graph is the same."""

    def forward(self, x):
        if x.dtype == torch.float32:
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps).to(x.dtype)

    def normalize(self, x):
        """The normalisation alone, without the affine weight and bias (ResBlock folds those into its own)."""
        if x.dtype == torch.float32:
            return F.group_norm(x, self.num_groups, None, None, self.eps)
        with torch.autocast(x.device.type, enabled=False):
            return F.group_norm(x.float(), self.num_groups, None, None, self.eps).to(x.dtype)


def norm(ch: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups of at least 4 channels each."""
    groups = min(32, ch // 4)
    while ch % groups:
        groups -= 1
    return Norm(groups, ch)


def sigma_embedding(c_noise: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding [cos | sin] of c_noise = 0.25 ln(sigma), shape [N] -> [N, dim].

    c_noise only spans about [-1.6, 1.1] over sigma in [0.002, 80], so the frequencies are
    geometric from 16 down to 16/1000 (radians per unit of c_noise) rather than the usual
    1 .. 1e-4 that would leave most channels nearly constant.
    """
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=c_noise.device)
    freqs = 16.0 * torch.exp(-math.log(1000.0) * i / half)
    arg = c_noise.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)


class ResBlock(nn.Module):
    # False: norm2 then the scale and shift as separate full-size steps, as models exported before 2026-12-07 have it
    # (export.load_onnx_weights reads those files by exporting a probe the same way). The same function either way.
    fold_norm = True

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)   # -> (scale, shift)
        self.norm2 = norm(cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)          # each block starts as the identity
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        # norm2(h) * (1 + scale) + shift, with norm2's weight and bias folded into the noise level's scale and shift on
        # [N, C, 1, 1] tensors: one full-size multiply and add instead of two of each (the same function and
        # parameters; 18 of the small preset's 85 full-size Mul and 114 Add nodes fewer in the exported graph).
        if self.fold_norm:
            g = self.norm2.weight[None, :, None, None] * (1 + scale)
            h = self.norm2.normalize(h) * g + (self.norm2.bias[None, :, None, None] * (1 + scale) + shift)
        else:
            h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Single-head self-attention over all positions, residual."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        self.scale = 1.0 / math.sqrt(ch)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).unbind(1)
        a = torch.softmax(torch.einsum("ncq,nck->nqk", q, k) * self.scale, dim=-1)
        out = torch.einsum("nqk,nck->ncq", a, v).reshape(n, c, h, w)
        return x + self.proj(out)


class UNet(nn.Module):
    """F(x_in, c_noise): the raw network that the consistency wrapper preconditions."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.emb_in = ch                            # sinusoidal embedding width
        emb_dim = 4 * ch
        self.emb_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim), nn.SiLU())
        widths = [int(ch * m) for m in cfg.mults]
        # conv_in gives `ch` channels, or the first level's width where that is narrower (small-thin).
        cur = min(ch, widths[0])
        self.conv_in = nn.Conv2d(cfg.in_channels * cfg.unshuffle ** 2, cur, 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for lvl, w in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(cfg.blocks):
                blocks.append(ResBlock(cur, w, emb_dim, cfg.dropout))
                cur = w
            self.down.append(blocks)
            if lvl < len(widths) - 1:
                self.downsample.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))

        self.mid1 = ResBlock(cur, cur, emb_dim, cfg.dropout)
        self.attn = Attention(cur) if cfg.attention else nn.Identity()
        self.mid2 = ResBlock(cur, cur, emb_dim, cfg.dropout)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for lvl in reversed(range(len(widths))):
            w = widths[lvl]
            blocks = nn.ModuleList()
            blocks.append(ResBlock(cur + w, w, emb_dim, cfg.dropout))   # concat skip
            for _ in range(cfg.blocks - 1):
                blocks.append(ResBlock(w, w, emb_dim, cfg.dropout))
            cur = w
            self.up.append(blocks)
            if lvl > 0:
                finer = widths[lvl - 1] if cfg.narrow_up else cur
                self.upsample.append(nn.Conv2d(cur, finer, 3, padding=1))
                cur = finer

        self.norm_out = norm(cur)
        self.conv_out = nn.Conv2d(cur, cfg.in_channels * cfg.unshuffle ** 2, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)         # start as F = 0, i.e. f(x) = c_skip x
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x, c_noise):
        emb = self.emb_mlp(sigma_embedding(c_noise, self.emb_in))
        if self.cfg.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.cfg.unshuffle)
        h = self.conv_in(x)
        skips = []
        for lvl, blocks in enumerate(self.down):
            for b in blocks:
                h = b(h, emb)
            skips.append(h)
            if lvl < len(self.downsample):
                h = self.downsample[lvl](h)
        h = self.mid2(self.attn(self.mid1(h, emb)), emb)
        for i, blocks in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)
            for b in blocks:
                h = b(h, emb)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, self.cfg.unshuffle) if self.cfg.unshuffle > 1 else out


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
