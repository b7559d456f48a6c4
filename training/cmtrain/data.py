"""Random training crops from a folder tree of photos, held in memory.

Every photo is decoded once and kept as uint8 at scales 1, 1/2 and 1/4 (box filter), so a
crop at scale 1/4 shows a whole scene and a crop at scale 1 shows texture. A fixed handful
of photos (chosen by a hash of the relative path, so the split never changes) is held out
for validation.
"""
import hashlib
import os
from typing import List

import numpy as np
from PIL import Image

try:    # DeviceCrops only: the CPU loader and the tools that only list photos need no torch
    import torch
except ImportError:     # pragma: no cover
    torch = None

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def is_validation(relpath: str, percent: float = 2.0) -> bool:
    """About `percent`% of photos, always the same ones."""
    h = int.from_bytes(hashlib.sha1(relpath.encode("utf-8")).digest()[:4], "big")
    return h % 10000 < percent * 100


def list_photos(root: str) -> List[str]:
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in files if f.lower().endswith(EXTENSIONS)]
    return sorted(out)


class PhotoCrops:
    """Uniform over photos, then over the scales at which the photo still holds a crop."""

    def __init__(self, root: str, crop: int, split: str = "train", scales=(1, 2, 4), seed: int = 0,
                 val_percent: float = 2.0):
        if split not in ("train", "val"):
            raise ValueError(f"Expected split 'train' or 'val' but received {split!r}")
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self.images = []   # per photo: list of HxWx3 uint8 arrays, one per usable scale
        self.names = [p for p in list_photos(root) if is_validation(p, val_percent) == (split == "val")]
        for rel in self.names:
            with Image.open(os.path.join(root, rel)) as im:
                im = im.convert("RGB")
                versions = []
                for s in scales:
                    v = im.reduce(s) if s > 1 else im
                    if min(v.size) >= crop:
                        versions.append(np.asarray(v, dtype=np.uint8))
                if versions:
                    self.images.append(versions)
        if not self.images:
            raise ValueError(f"Expected photos of at least {crop} pixels under {root} but found none")

    @property
    def photos(self) -> int:
        return len(self.images)

    def rng_state(self):
        return self.rng.bit_generator.state

    def set_rng_state(self, state) -> None:
        self.rng.bit_generator.state = state

    def batch(self, n: int) -> np.ndarray:
        """n random crops as float32 [n, 3, crop, crop] in [-1, 1], random horizontal flips."""
        c, rng = self.crop, self.rng
        out = np.empty((n, c, c, 3), dtype=np.uint8)
        for i in range(n):
            versions = self.images[rng.integers(len(self.images))]
            img = versions[rng.integers(len(versions))]
            y = rng.integers(img.shape[0] - c + 1)
            x = rng.integers(img.shape[1] - c + 1)
            patch = img[y:y + c, x:x + c]
            out[i] = patch[:, ::-1] if rng.random() < 0.5 else patch
        return out.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0


class DeviceCrops:
    """PhotoCrops's crops made on the training device (TRAINING.md: on a GPU, no CPU loader between steps).

    Every version of every photo that PhotoCrops keeps lies in one flat uint8 buffer on the device (HWC, about 0.6 GB
    for the 901 training photos), and a batch is one gather: the same distribution as PhotoCrops.batch (uniform over
    photos, then over the photo's versions, then over positions; horizontal flips with probability 1/2), drawn with a
    torch generator on the device. batch() returns a float32 tensor [n, 3, crop, crop] in [-1, 1] on the device."""

    def __init__(self, source: PhotoCrops, device, seed: int = 0):
        self.crop, self.device = source.crop, torch.device(device)
        sizes, first, count, flat, offset = [], [], [], [], 0
        for versions in source.images:
            first.append(len(sizes))
            count.append(len(versions))
            for v in versions:
                sizes.append((offset, v.shape[0], v.shape[1]))
                flat.append(np.ascontiguousarray(v).reshape(-1))
                offset += v.size
        self.buffer = torch.from_numpy(np.concatenate(flat)).to(self.device)
        meta = torch.tensor(sizes, dtype=torch.int64)
        self.offset, self.height, self.width = (meta[:, i].to(self.device) for i in range(3))
        self.first = torch.tensor(first, dtype=torch.int64, device=self.device)
        self.count = torch.tensor(count, dtype=torch.int64, device=self.device)
        self.photos = source.photos
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(seed)
        c = self.crop
        self._dy = torch.arange(c, device=self.device).view(1, c, 1, 1)
        self._dx = torch.arange(c, device=self.device).view(1, c)
        self._ch = torch.arange(3, device=self.device).view(1, 1, 1, 3)

    def rng_state(self):
        return self.gen.get_state()

    def set_rng_state(self, state) -> None:
        self.gen.set_state(state.cpu() if hasattr(state, "cpu") else state)

    def _uniform_below(self, n: int, limit: torch.Tensor) -> torch.Tensor:
        """An integer in [0, limit) for each of n limits (clamped: float rounding may reach limit itself)."""
        u = torch.rand(n, generator=self.gen, device=self.device, dtype=torch.float64)
        return torch.minimum((u * limit).long(), limit - 1)

    def draw(self, n: int):
        """n crops' (photo, version, top, left, flipped), as PhotoCrops.batch draws them; version indexes the flat
        list of every photo's versions (photo p's are first[p] .. first[p] + count[p] - 1)."""
        photo = self._uniform_below(n, torch.full((n,), len(self.first), device=self.device))
        version = self.first[photo] + self._uniform_below(n, self.count[photo])
        y0 = self._uniform_below(n, self.height[version] - self.crop + 1)
        x0 = self._uniform_below(n, self.width[version] - self.crop + 1)
        flip = torch.rand(n, generator=self.gen, device=self.device) < 0.5
        return photo, version, y0, x0, flip

    def batch(self, n: int) -> "torch.Tensor":
        c = self.crop
        _, version, y0, x0, flip = self.draw(n)
        w, off = self.width[version], self.offset[version]
        xs = torch.where(flip.view(n, 1), x0.view(n, 1) + (c - 1) - self._dx, x0.view(n, 1) + self._dx)
        idx = (off.view(n, 1, 1, 1) + ((y0.view(n, 1, 1, 1) + self._dy) * w.view(n, 1, 1, 1) + xs.view(n, 1, c, 1)) * 3
               + self._ch)
        return self.buffer[idx].permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous()
