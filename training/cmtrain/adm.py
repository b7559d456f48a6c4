"""The ADM UNet of OpenAI's released consistency models, and the consistency function around it.

Our own implementation of the network that openai/consistency_models (cm/unet.py, itself based on
openai/guided-diffusion) trained, restricted to what the released checkpoints use: 2-D images,
residual up/down-sampling blocks (`resblock_updown`), a fixed number of channels per attention head,
fp32 inference. Module and parameter names follow that code exactly, so a released state_dict loads
with `load_state_dict(strict=True)` (tests/fixtures/adm_*_params.json hold their names and shapes).

Facts that matter for real weights (ALGORITHMS.md section 6):
- attention: qkv is a 1x1 conv to 3C channels laid out as (three, heads, head_dim), the layout of
  their flash-attention path that the checkpoints were trained with (NOT the legacy guided-diffusion
  (heads, three, head_dim) split); softmax(q.k / sqrt(head_dim)); heads concatenated as (heads, head_dim);
- GroupNorm: 32 groups, computed in fp32;
- time embedding: [cos | sin] of t * exp(-ln(10000) i / half), i < half = model_channels / 2, then
  Linear, SiLU, Linear to 4 * model_channels; a class-conditional model adds a learned label embedding;
- residual block: GroupNorm, SiLU, (resample), 3x3 conv; then either scale-shift
  (norm(h) * (1 + scale) + shift) or an added embedding before the second GroupNorm; SiLU, dropout,
  3x3 conv; 1x1 conv on the skip path where the width changes. Resampling: 2x2 average pool down,
  nearest-neighbour up, applied to both the residual and the skip path.

The consistency function (ALGORITHMS.md section 2), with t = c_noise fed to the net:
  f(x, sigma) = c_skip x + c_out F(c_in x, 1000 * 0.25 * ln(sigma + 1e-44) [, class])
so f(x, 0.002) == x exactly.
"""
import math
from dataclasses import asdict, dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .consistency import RHO, SIGMA_DATA, SIGMA_MAX, SIGMA_MIN, scalings  # noqa: F401 (re-exported for convert.py)


@dataclass(frozen=True)
class ADMConfig:
    image_size: int                       # the training resolution
    model_channels: int
    channel_mult: Tuple[int, ...]
    num_res_blocks: int
    attention_resolutions: Tuple[int, ...]  # in pixels at the training resolution (32, 16, 8)
    use_scale_shift_norm: bool
    num_classes: int = 0                  # 0: unconditional
    num_head_channels: int = 64
    resblock_updown: bool = True
    in_channels: int = 3
    out_channels: int = 3

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this (one halving per level after the first)."""
        return 2 ** (len(self.channel_mult) - 1)

    def to_json_dict(self) -> dict:
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attention_resolutions"] = list(self.attention_resolutions)
        return d


PRESETS = {
    # cd_imagenet64_l2, cd_imagenet64_lpips, ct_imagenet64 (and edm_imagenet64_ema): 295,899,267 parameters
    "imagenet64": ADMConfig(image_size=64, model_channels=192, channel_mult=(1, 2, 3, 4), num_res_blocks=3,
                            attention_resolutions=(32, 16, 8), use_scale_shift_norm=True, num_classes=1000),
    # *_bedroom256*, *_cat256*: 526,304,771 parameters
    "lsun256": ADMConfig(image_size=256, model_channels=256, channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2,
                         attention_resolutions=(32, 16, 8), use_scale_shift_norm=False, num_classes=0),
    # Same code paths at a few hundred thousand parameters (class labels, scale-shift, attention at two
    # levels, width changes), for fast tests only; not a released architecture.
    "test": ADMConfig(image_size=32, model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
                      attention_resolutions=(16, 8), use_scale_shift_norm=True, num_classes=10, num_head_channels=16),
}


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32) evaluated in fp32 whatever the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


def norm32(channels: int, device=None) -> GroupNorm32:
    return GroupNorm32(32, channels, device=device)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[N] -> [N, dim]: cos in the first half, sin in the second, at frequencies exp(-ln(max_period) i / half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    arg = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """Residual block conditioned on the embedding; `resample` is None, "down" or "up".

    Children are numbered like the reference code's (in_layers.2 is the first conv, out_layers.3 the
    second), because those indices are the parameter names of the checkpoints."""

    def __init__(self, cin: int, emb_dim: int, cout: Optional[int] = None, scale_shift: bool = False,
                 resample: Optional[str] = None, dropout: float = 0.0, device=None):
        super().__init__()
        cout = cout or cin
        self.scale_shift = scale_shift
        self.resample = resample
        dev = {"device": device}
        self.in_layers = nn.Sequential(norm32(cin, device), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1, **dev))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * cout if scale_shift else cout, **dev))
        self.out_layers = nn.Sequential(norm32(cout, device), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(cout, cout, 3, padding=1, **dev))
        self.skip_connection = nn.Identity() if cout == cin else nn.Conv2d(cin, cout, 1, **dev)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        norm_in, act_in, conv_in = self.in_layers
        h = conv_in(self._resample(act_in(norm_in(x))))
        x = self._resample(x)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        norm_out, rest = self.out_layers[0], self.out_layers[1:]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = rest(norm_out(h) * (1 + scale) + shift)
        else:
            h = rest(norm_out(h + e))
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all positions, residual.

    qkv's 3C output channels are (three, heads, head_dim): q is the first C channels, k the next C,
    v the last C, and within each the heads are consecutive blocks of head_dim channels."""

    def __init__(self, channels: int, head_channels: int, device=None):
        super().__init__()
        if channels % head_channels:
            raise ValueError(f"Expected channels divisible by {head_channels} but received {channels}")
        self.heads = channels // head_channels
        self.head_dim = head_channels
        self.norm = norm32(channels, device)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, device=device)
        self.proj_out = nn.Conv2d(channels, channels, 1, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        qkv = self.qkv(self.norm(x)).reshape(n, 3, self.heads, self.head_dim, -1)   # [N, 3, heads, d, T]
        q, k, v = qkv.unbind(1)                                                       # [N, heads, d, T]
        w = torch.matmul(q.transpose(-1, -2) * (1.0 / math.sqrt(self.head_dim)), k)  # [N, heads, T(q), T(k)]
        w = torch.softmax(w.float(), dim=-1).to(v.dtype)
        h = torch.matmul(v, w.transpose(-1, -2))                                      # [N, heads, d, T(q)]
        return x + self.proj_out(h.reshape(x.shape))


class EmbedSequential(nn.Sequential):
    """Children run in order; residual blocks also get the embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class ADMUNet(nn.Module):
    """F(x, t [, y]) with the reference code's module tree: time_embed, label_emb, input_blocks,
    middle_block, output_blocks, out.

    `self.layout` lists every residual/attention block as (module prefix, role, place) so that other
    layouts (diffusers) can be mapped onto ours: place is ("down", level, j), ("downsample", level),
    ("mid", k), ("up", i, j) with i counting decoder levels from the deepest, or ("upsample", i)."""

    def __init__(self, cfg: ADMConfig, dropout: float = 0.0, device=None):
        super().__init__()
        if not cfg.resblock_updown:
            raise ValueError("Only resblock_updown=True (the released checkpoints' setting) is implemented")
        self.cfg = cfg
        mc, emb_dim = cfg.model_channels, 4 * cfg.model_channels
        attn_ds = {cfg.image_size // r for r in cfg.attention_resolutions}
        ss = cfg.use_scale_shift_norm
        self.layout: List[Tuple[str, str, tuple]] = []
        dev = {"device": device}
        res = lambda cin, cout, resample=None: ResBlock(cin, emb_dim, cout, ss, resample, dropout, device)
        attn = lambda c: AttentionBlock(c, cfg.num_head_channels, device)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim, **dev), nn.SiLU(), nn.Linear(emb_dim, emb_dim, **dev))
        if cfg.num_classes:
            self.label_emb = nn.Embedding(cfg.num_classes, emb_dim, **dev)

        ch = int(cfg.channel_mult[0] * mc)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1, **dev))])
        skips, ds = [ch], 1
        for level, mult in enumerate(cfg.channel_mult):
            for j in range(cfg.num_res_blocks):
                idx, cout = len(self.input_blocks), int(mult * mc)
                layers = [res(ch, cout)]
                self.layout.append((f"input_blocks.{idx}.0", "res", ("down", level, j)))
                ch = cout
                if ds in attn_ds:
                    layers.append(attn(ch))
                    self.layout.append((f"input_blocks.{idx}.1", "attn", ("down", level, j)))
                self.input_blocks.append(EmbedSequential(*layers))
                skips.append(ch)
            if level < len(cfg.channel_mult) - 1:
                self.layout.append((f"input_blocks.{len(self.input_blocks)}.0", "res", ("downsample", level)))
                self.input_blocks.append(EmbedSequential(res(ch, ch, "down")))
                skips.append(ch)
                ds *= 2

        self.middle_block = EmbedSequential(res(ch, ch), attn(ch), res(ch, ch))
        self.layout += [("middle_block.0", "res", ("mid", 0)), ("middle_block.1", "attn", ("mid", 0)),
                        ("middle_block.2", "res", ("mid", 1))]

        self.output_blocks = nn.ModuleList()
        for i, (level, mult) in enumerate(reversed(list(enumerate(cfg.channel_mult)))):
            for j in range(cfg.num_res_blocks + 1):
                idx, cout = len(self.output_blocks), int(mult * mc)
                layers = [res(ch + skips.pop(), cout)]
                self.layout.append((f"output_blocks.{idx}.0", "res", ("up", i, j)))
                ch = cout
                if ds in attn_ds:
                    layers.append(attn(ch))
                    self.layout.append((f"output_blocks.{idx}.1", "attn", ("up", i, j)))
                if level > 0 and j == cfg.num_res_blocks:
                    self.layout.append((f"output_blocks.{idx}.{len(layers)}", "res", ("upsample", i)))
                    layers.append(res(ch, ch, "up"))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(norm32(ch, device), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels, 3, padding=1, **dev))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if (y is not None) != bool(self.cfg.num_classes):
            raise ValueError("Expected class labels exactly when the model is class-conditional")
        emb = self.time_embed(timestep_embedding(t, self.cfg.model_channels))
        if y is not None:
            emb = emb + self.label_emb(y)
        hs = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


class ADMConsistency(nn.Module):
    """f(x, sigma [, class_labels]) of ALGORITHMS.md section 2 around an ADMUNet (`self.net`).

    At sigma = 0.002 (float32), sigma - sigma_min is exactly 0, so c_skip = 1 and c_out = 0 and
    f(x, 0.002) == x bit for bit (F is finite). No clamp: the sampler clamps."""

    def __init__(self, cfg: ADMConfig, sigma_min: float = SIGMA_MIN, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.cfg = cfg
        self.net = ADMUNet(cfg)
        self.sigma_min = sigma_min
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, class_labels: Optional[torch.Tensor] = None):
        c_skip, c_out, c_in = scalings(sigma, self.sigma_min, self.sigma_data)
        c_noise = 1000.0 * 0.25 * torch.log(sigma + 1e-44)
        return c_skip * x + c_out * self.net(c_in * x, c_noise, class_labels).to(x.dtype)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def random_adm(arch: str, seed: int = 0) -> ADMConsistency:
    """Random weights in which every layer acts: the reference code zero-initialises the last conv of
    each residual branch, each attention output and the output conv, which would hide most of the
    network from a test. Here weights are N(0, 1/fan_in), biases N(0, 0.05^2), GroupNorm scales
    1 + N(0, 0.1^2), so activations stay O(1) through the whole net."""
    g = torch.Generator().manual_seed(seed)
    model = ADMConsistency(PRESETS[arch])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.weight[0].numel()))
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.Embedding):
                m.weight.copy_(0.5 * torch.randn(m.weight.shape, generator=g))
    return model.eval()
