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
