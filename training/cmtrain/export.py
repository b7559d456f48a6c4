"""Export a consistency model to a `cm` ONNX file (model contract version 1, ARCHITECTURE.md).

  python3 -m cmtrain.export --checkpoint runs/default/last.pt --out ../models/cm-default.onnx \
      --name cm-default --license CC-BY-SA-4.0 --trained-on "..."
  python3 -m cmtrain.export --random --preset tiny --seed 0 --out ../fixtures/tiny-random.onnx \
      --name tiny-random --license MIT --trained-on "nothing: random weights, for tests only" \
      --ref ../fixtures/tiny-random.ref.json
"""
import argparse
import base64
import json
import os
import tempfile

import numpy as np
import onnx
import torch

from .consistency import RHO, SIGMA_DATA, SIGMA_MAX, SIGMA_MIN, ConsistencyModel, check_plans
from .unet import PRESETS, UNetConfig, count_params

GRID = 40
DEFAULT_PLANS = {"1": [0, 39], "2": [0, 22, 39], "3": [0, 12, 22, 39], "4": [0, 8, 16, 24, 39]}


def random_model(preset: str, seed: int) -> ConsistencyModel:
    """Random weights; the zero-initialised layers get small random weights too, so that every
    path (residual branches, attention, output conv) really changes the result."""
    torch.manual_seed(seed)
    model = ConsistencyModel(PRESETS[preset])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    return model.eval()


def load_checkpoint(path: str, use_ema: bool = True) -> ConsistencyModel:
    ckpt = torch.load(path, map_location="cpu")
    cfg = UNetConfig(**{**ckpt["config"], "mults": tuple(ckpt["config"]["mults"])})
    model = ConsistencyModel(cfg)
    model.load_state_dict(ckpt["ema"] if use_ema else ckpt["model"])
    return model.eval()


def export_onnx(model: ConsistencyModel, out: str, meta: dict) -> None:
    """Trace with dynamic N, H, W, then attach metadata_props; always one self-contained file."""
    res = 2 ** (len(model.net.cfg.mults) - 1)
    x = torch.randn(2, 3, 8 * res, 8 * res)
    sigma = torch.tensor([1.0, 10.0])
    dyn = {"x": {0: "N", 2: "H", 3: "W"}, "sigma": {0: "N"}, "denoised": {0: "N", 2: "H", 3: "W"}}
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.onnx")
        with torch.no_grad():
            torch.onnx.export(model, (x, sigma), raw, input_names=["x", "sigma"], output_names=["denoised"],
                              dynamic_axes=dyn, opset_version=17, do_constant_folding=True)
        proto = onnx.load(raw)
    # The tracer cannot name the output's channel count; it is fixed, so say so.
    ch = proto.graph.output[0].type.tensor_type.shape.dim[1]
    ch.Clear()
    ch.dim_value = model.net.cfg.in_channels
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, str(v)
    onnx.checker.check_model(proto)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    onnx.save(proto, out)     # < 2 GB: protobuf keeps the weights inline, no external data


def metadata(model: ConsistencyModel, name: str, license: str, trained_on: str, plans: dict) -> dict:
    check_plans(plans, GRID)
    return {
        "cm.format": "1", "cm.resolution": "64", "cm.channels": "3",
        "cm.sigma_min": f"{SIGMA_MIN:g}", "cm.sigma_max": f"{SIGMA_MAX:g}", "cm.sigma_data": f"{SIGMA_DATA:g}",
        "cm.rho": f"{RHO:g}", "cm.grid": str(GRID), "cm.plans": json.dumps(plans, separators=(",", ":")),
        "cm.num_classes": "0", "cm.name": name, "cm.license": license, "cm.trained_on": trained_on,
        "cm.params": str(count_params(model)),
        "cm.architecture": json.dumps({"type": "unet", **model.net.cfg.to_json_dict()}, separators=(",", ":")),
    }


def b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def write_reference(model: ConsistencyModel, path: str, seed: int, sigmas=(80.0, 0.5), size: int = 64) -> None:
    """A PyTorch reference for the ONNX runtime: x = N(0,1) * sigma per sample, and f(x, sigma)."""
    g = torch.Generator().manual_seed(seed)
    sigma = torch.tensor(sigmas, dtype=torch.float32)
    x = torch.randn(len(sigmas), 3, size, size, generator=g) * sigma[:, None, None, None]
    with torch.no_grad():
        y = model(x, sigma)
    ref = {"shape": list(x.shape), "sigma": [float(s) for s in sigmas], "x": b64(x.numpy()), "denoised": b64(y.numpy())}
    with open(path, "w") as f:
        json.dump(ref, f)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m cmtrain.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a training checkpoint (.pt) written by cmtrain.train")
    src.add_argument("--random", action="store_true", help="random weights (test models)")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="architecture for --random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--raw-weights", action="store_true", help="export the trained weights instead of the EMA")
    p.add_argument("--out", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--license", required=True)
    p.add_argument("--trained-on", required=True)
    p.add_argument("--plans", default=json.dumps(DEFAULT_PLANS), help='JSON, e.g. {"1":[0,39],"2":[0,22,39]}')
    p.add_argument("--ref", help="also write a PyTorch reference JSON (x, sigma, denoised) here")
    a = p.parse_args(argv)

    model = random_model(a.preset, a.seed) if a.random else load_checkpoint(a.checkpoint, not a.raw_weights)
    export_onnx(model, a.out, metadata(model, a.name, a.license, a.trained_on, json.loads(a.plans)))
    print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes, {count_params(model)} parameters)")
    if a.ref:
        write_reference(model, a.ref, a.seed)
        print(f"wrote {a.ref} ({os.path.getsize(a.ref)} bytes)")


if __name__ == "__main__":
    main()
