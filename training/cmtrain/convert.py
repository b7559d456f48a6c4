"""Convert one of OpenAI's released consistency-model checkpoints to a `cm` ONNX model.

  python3 -m cmtrain.convert cd_imagenet64_lpips.pt -o ../models/cd_imagenet64_lpips.onnx
  python3 -m cmtrain.convert ct_bedroom256.pt -o ct_bedroom256.onnx          (writes ct_bedroom256.onnx.data too)
  python3 -m cmtrain.convert path/to/diffusers-cd_imagenet64_l2/unet -o cd_imagenet64_l2.onnx
  python3 -m cmtrain.convert --random --arch imagenet64 -o /tmp/random-imagenet64.onnx

Input: an openai/consistency_models checkpoint (.pt, a plain state_dict), or a diffusers UNet folder
(`unet/` of openai/diffusers-*: config.json + diffusion_pytorch_model.safetensors or .bin; read here
without the safetensors package), or --random weights. The architecture (imagenet64 | lsun256) is read
from the weights; the checkpoint kind (cd_imagenet64_lpips, ct_bedroom256, ...), which fixes the Karras
grid and the published sampling plans, is read from the file or folder name unless --checkpoint-kind
says it. EDM checkpoints (edm_*) are diffusion models, not consistency models, and are refused.

Output: model contract version 1 (ARCHITECTURE.md): inputs x float32 [N,3,H,W], sigma float32 [N] and,
for ImageNet-64, class_labels int64 [N] (0..999); output denoised = f(x, sigma) with the scalings
inside the graph. Models over ~1.8 GB of weights (LSUN-256: 2.1 GB) are written with their weights in
one external data file beside the .onnx (`<name>.onnx.data`; keep the two together).
"""
import argparse
import glob
import json
import os
import re
import sys
import tempfile
import warnings
from typing import Dict, Optional, Tuple

import numpy as np
import onnx
import torch

from .adm import (PRESETS, RHO, SIGMA_DATA, SIGMA_MAX, SIGMA_MIN, ADMConfig, ADMConsistency, ADMUNet, count_params,
                  random_adm)
from .export import check_plans

RELEASE_URL = "https://openaipublic.blob.core.windows.net/consistency/{}.pt"
SOURCE = "openai/consistency_models (Song, Dhariwal, Chen, Sutskever 2023)"
DATASETS = {
    "imagenet64": "ImageNet ILSVRC-2012 at 64x64, 1000 classes",
    "bedroom256": "LSUN Bedroom at 256x256",
    "cat256": "LSUN Cat at 256x256",
}


def _kind(arch, grid, plan2=None):
    plans = {"1": [0, grid - 1]}
    if plan2:
        plans["2"] = plan2
    return {"arch": arch, "grid": grid, "plans": plans}


# Grids and two-evaluation plans of scripts/launch.sh (the ternary-searched `--ts`); the CD cat models
# have no published multistep plan, so they carry the one-step plan only.
KINDS = {
    "cd_imagenet64_l2": _kind("imagenet64", 40, [0, 22, 39]),
    "cd_imagenet64_lpips": _kind("imagenet64", 40, [0, 22, 39]),
    "ct_imagenet64": _kind("imagenet64", 201, [0, 106, 200]),
    "cd_bedroom256_l2": _kind("lsun256", 40, [0, 18, 39]),
    "cd_bedroom256_lpips": _kind("lsun256", 40, [0, 17, 39]),
    "ct_bedroom256": _kind("lsun256", 151, [0, 67, 150]),
    "cd_cat256_l2": _kind("lsun256", 40),
    "cd_cat256_lpips": _kind("lsun256", 40),
    "ct_cat256": _kind("lsun256", 151, [0, 62, 150]),
}


class ConvertError(Exception):
    pass


def infer_kind(path: str) -> Optional[str]:
    """The checkpoint kind named in the file name, else anywhere in the path (a diffusers/HF cache folder)."""
    for s in (os.path.basename(os.path.normpath(path)), path):
        s = s.lower().replace("-", "_")
        if re.search(r"edm_(imagenet64|bedroom256|cat256)", s):
            raise ConvertError(f"{path} is an EDM checkpoint: a diffusion model, not a consistency model; "
                               f"convert one of {', '.join(KINDS)}")
        found = [k for k in KINDS if re.search(rf"(^|[^a-z0-9]){k}($|[^a-z0-9])", s)]
        if len(found) == 1:
            return found[0]
    return None


def trained_on(kind: str) -> str:
    method, data = kind.split("_")[:2]
    metric = kind.split("_")[2] if kind.count("_") == 2 else "lpips"
    how = "consistency distillation from EDM" if method == "cd" else "consistency training"
    return f"{DATASETS[data]}; {how}, {'LPIPS' if metric == 'lpips' else 'l2'} metric; released weights {kind}.pt of {SOURCE}"


# ---------------------------------------------------------------------------------------------- loading

def _state_dict_of(obj) -> Dict[str, torch.Tensor]:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    for key in ("ema", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return _state_dict_of(obj[key])
    raise ConvertError("Expected a state_dict (name -> tensor) in the checkpoint but found none")


def load_openai(path: str) -> Dict[str, torch.Tensor]:
    """A released .pt: a plain state_dict (loaded with weights_only, nothing else is unpickled)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:                     # torch < 1.13
        obj = torch.load(path, map_location="cpu")
    return _state_dict_of(obj)


_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def read_safetensors(path: str) -> Dict[str, torch.Tensor]:
    """The safetensors format without the package: u64 little-endian header length, a JSON header
    {name: {dtype, shape, data_offsets: [begin, end]}}, then the raw little-endian bytes."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = np.asarray(raw[b:e])
        if info["dtype"] == "BF16":       # bfloat16 = the high half of a float32
            arr = (buf.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in _ST_DTYPES:
            arr = buf.view(np.dtype(_ST_DTYPES[info["dtype"]]).newbyteorder("<"))
        else:
            raise ConvertError(f"Expected F32, F16 or BF16 tensors in {path} but {name} is {info['dtype']}")
        out[name] = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True).reshape(info["shape"]))
    return out


def diffusers_key_map(cfg: ADMConfig):
    """[(our name, diffusers name or (q, k, v) names, kind)] for every parameter of ADMUNet(cfg), following
    diffusers' UNet2DModel as built by scripts/convert_consistency_to_diffusers.py: kind "plain" copies,
    "conv1x1" adds the two trailing 1x1 dims diffusers squeezed away, "qkv" concatenates to_q, to_k, to_v."""
    net = ADMUNet(cfg, device="meta")        # names and layout only, no memory
    names = set(net.state_dict().keys())
    res_map = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
               "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
    out = [("time_embed.0.weight", "time_embedding.linear_1.weight", "plain"),
           ("time_embed.0.bias", "time_embedding.linear_1.bias", "plain"),
           ("time_embed.2.weight", "time_embedding.linear_2.weight", "plain"),
           ("time_embed.2.bias", "time_embedding.linear_2.bias", "plain"),
           ("input_blocks.0.0.weight", "conv_in.weight", "plain"), ("input_blocks.0.0.bias", "conv_in.bias", "plain"),
           ("out.0.weight", "conv_norm_out.weight", "plain"), ("out.0.bias", "conv_norm_out.bias", "plain"),
           ("out.2.weight", "conv_out.weight", "plain"), ("out.2.bias", "conv_out.bias", "plain")]
    if cfg.num_classes:
        out.append(("label_emb.weight", "class_embedding.weight", "plain"))
    for prefix, role, place in net.layout:
        if place[0] in ("down", "up"):
            theirs = f"{place[0]}_blocks.{place[1]}.{'resnets' if role == 'res' else 'attentions'}.{place[2]}"
        elif place[0] == "downsample":
            theirs = f"down_blocks.{place[1]}.downsamplers.0"
        elif place[0] == "upsample":
            theirs = f"up_blocks.{place[1]}.upsamplers.0"
        else:
            theirs = f"mid_block.{'resnets' if role == 'res' else 'attentions'}.{place[1]}"
        for p in ("weight", "bias"):
            if role == "res":
                for ours_sub, their_sub in res_map.items():
                    if f"{prefix}.{ours_sub}.{p}" in names:
                        out.append((f"{prefix}.{ours_sub}.{p}", f"{theirs}.{their_sub}.{p}", "plain"))
            else:
                out.append((f"{prefix}.norm.{p}", f"{theirs}.group_norm.{p}", "plain"))
                out.append((f"{prefix}.qkv.{p}", tuple(f"{theirs}.to_{c}.{p}" for c in "qkv"), "qkv"))
                out.append((f"{prefix}.proj_out.{p}", f"{theirs}.to_out.0.{p}", "conv1x1"))
    assert {o[0] for o in out} == names, sorted(names ^ {o[0] for o in out})[:5]
    return out


# diffusers before 0.15 named the attention parameters differently; its loader renames them the same way.
_DIFFUSERS_OLD_ATTENTION = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}


def from_diffusers(sd: Dict[str, torch.Tensor], cfg: ADMConfig) -> Dict[str, torch.Tensor]:
    """diffusers UNet2DModel parameters -> our (= openai's) names and shapes."""
    def get(name):
        if name in sd:
            return sd[name]
        for new, old in _DIFFUSERS_OLD_ATTENTION.items():
            if new in name and name.replace(new, old) in sd:
                return sd[name.replace(new, old)]
        raise ConvertError(f"Expected parameter {name} in the diffusers weights (is this the {cfg.image_size}px "
                           f"architecture?) but it is missing")

    out, used = {}, 0
    for ours, theirs, kind in diffusers_key_map(cfg):
        if kind == "qkv":
            t = torch.cat([get(n) for n in theirs], dim=0)
            used += 3
        else:
            t = get(theirs)
            used += 1
        if kind in ("qkv", "conv1x1") and t.dim() == 2:
            t = t[:, :, None, None]
        out[ours] = t
    if used != len(sd):
        raise ConvertError(f"Expected {used} parameters in the diffusers weights but found {len(sd)}")
    return out


def load_diffusers_folder(folder: str) -> Tuple[Dict[str, torch.Tensor], Optional[dict]]:
    """A diffusers UNet folder (or a pipeline folder with unet/ inside): its weights and config.json."""
    if os.path.isdir(os.path.join(folder, "unet")):
        folder = os.path.join(folder, "unet")
    config = None
    if os.path.isfile(os.path.join(folder, "config.json")):
        config = json.load(open(os.path.join(folder, "config.json")))
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                 "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return (read_safetensors(path) if path.endswith(".safetensors") else load_openai(path)), config
    found = ", ".join(sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "*")))) or "nothing"
    raise ConvertError(f"Expected diffusion_pytorch_model.safetensors or .bin in {folder} but found {found}")


def arch_of(sd: Dict[str, torch.Tensor]) -> str:
    """imagenet64 or lsun256, from the weights themselves (our names)."""
    for arch, cfg in PRESETS.items():
        if arch == "test":
            continue
        t = sd.get("time_embed.0.weight")
        if t is not None and tuple(t.shape) == (4 * cfg.model_channels, cfg.model_channels) \
                and ("label_emb.weight" in sd) == bool(cfg.num_classes):
            return arch
    raise ConvertError("Expected the weights of the ImageNet-64 or LSUN-256 UNet of openai/consistency_models, "
                       "but they match neither")


def load_weights(path: str) -> Dict[str, torch.Tensor]:
    """Any supported input -> a float32 state_dict with openai's names."""
    if os.path.isdir(path):
        sd, config = load_diffusers_folder(path)
        classes = (config or {}).get("num_class_embeds") or (1000 if "class_embedding.weight" in sd else 0)
        size = (config or {}).get("sample_size") or (64 if classes else 256)
        arch = "imagenet64" if (size, bool(classes)) == (64, True) else "lsun256" if (size, bool(classes)) == (256, False) else None
        if arch is None:
            raise ConvertError(f"Expected a 64px class-conditional or 256px unconditional diffusers UNet in {path} "
                               f"but its config says sample_size {size}, num_class_embeds {classes}")
        sd = from_diffusers(sd, PRESETS[arch])
    else:
        sd = load_openai(path)
    return {k: v.float() for k, v in sd.items()}


def build(sd: Dict[str, torch.Tensor], arch: Optional[str] = None) -> ADMConsistency:
    found = arch_of(sd)
    if arch and arch != found:
        raise ConvertError(f"Expected {arch} weights (--arch) but these are {found}")
    model = ADMConsistency(PRESETS[found])
    missing, unexpected = [], []
    try:
        model.net.load_state_dict(sd, strict=True)
    except RuntimeError:
        ours = model.net.state_dict()
        missing = [k for k in ours if k not in sd]
        unexpected = [k for k in sd if k not in ours]
        wrong = [k for k in ours if k in sd and ours[k].shape != sd[k].shape]
        raise ConvertError(f"Expected the {found} parameter set; missing {missing[:3]}, unexpected {unexpected[:3]}, "
                           f"wrong shape {wrong[:3]}") from None
    return model.eval()


# ---------------------------------------------------------------------------------------------- export

def metadata(model: ADMConsistency, name: str, license: str, trained_on: str, grid: int, plans: dict,
             source: str) -> dict:
    check_plans(plans, grid)
    cfg = model.cfg
    return {
        "cm.format": "1", "cm.resolution": str(cfg.image_size), "cm.channels": str(cfg.in_channels),
        "cm.sigma_min": f"{SIGMA_MIN:g}", "cm.sigma_max": f"{SIGMA_MAX:g}", "cm.sigma_data": f"{SIGMA_DATA:g}",
        "cm.rho": f"{RHO:g}", "cm.grid": str(grid), "cm.plans": json.dumps(plans, separators=(",", ":")),
        "cm.num_classes": str(cfg.num_classes), "cm.name": name, "cm.license": license, "cm.trained_on": trained_on,
        "cm.params": str(count_params(model)), "cm.size_multiple": str(cfg.size_multiple), "cm.source": source,
        "cm.architecture": json.dumps({"type": "adm", **cfg.to_json_dict()}, separators=(",", ":")),
    }


EXTERNAL_OVER_BYTES = 1_800_000_000      # protobuf cannot hold a file of 2 GiB or more


def uses_external_data(model: ADMConsistency, external: str) -> bool:
    return external == "always" or (external == "auto" and 4 * count_params(model) > EXTERNAL_OVER_BYTES)


def export_onnx(model: ADMConsistency, out: str, meta: dict, external: str = "auto") -> list:
    """Trace f with dynamic N, H, W (opset 17), attach metadata_props, save; returns the files written."""
    cfg = model.cfg
    side = 2 * cfg.size_multiple       # tracing runs the net once: a small input keeps that cheap; N, H, W stay dynamic
    x = torch.randn(2, cfg.in_channels, side, side)
    sigma = torch.tensor([1.0, 10.0])
    args, names = (x, sigma), ["x", "sigma"]
    dyn = {"x": {0: "N", 2: "H", 3: "W"}, "sigma": {0: "N"}, "denoised": {0: "N", 2: "H", 3: "W"}}
    if cfg.num_classes:
        args, names = args + (torch.tensor([1, 2]),), names + ["class_labels"]
        dyn["class_labels"] = {0: "N"}
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.onnx")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The shape inference of prim::Constant")   # harmless, x3
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)   # group_norm's batch-size check
            torch.onnx.export(model, args, raw, input_names=names, output_names=["denoised"], dynamic_axes=dyn,
                              opset_version=17, do_constant_folding=True)
        proto = onnx.load(raw)               # loads any external data torch wrote beside it
    ch = proto.graph.output[0].type.tensor_type.shape.dim[1]
    ch.Clear()
    ch.dim_value = cfg.out_channels
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, str(v)
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    data = out + ".data"
    for stale in (out, data):
        if os.path.exists(stale):
            os.remove(stale)                 # onnx appends to an existing data file
    if uses_external_data(model, external):
        onnx.save_model(proto, out, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=os.path.basename(data), size_threshold=1024, convert_attribute=False)
        onnx.checker.check_model(out)
        return [out, data]
    onnx.checker.check_model(proto)
    onnx.save(proto, out)
    return [out]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m cmtrain.convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="a released .pt, or a diffusers unet/ (or pipeline) folder")
    p.add_argument("--random", action="store_true", help="random weights instead of a checkpoint (test models)")
    p.add_argument("--arch", choices=["imagenet64", "lsun256", "test"],
                   help="architecture (read from the weights; required with --random unless the kind says it)")
    p.add_argument("--checkpoint-kind", choices=sorted(KINDS),
                   help="which release this is (grid and plans); read from the path when omitted")
    p.add_argument("-o", "--out", required=True, help="output .onnx")
    p.add_argument("--name", help="cm.name (default: openai-<kind>, or random-<arch>)")
    p.add_argument("--license", help="cm.license (default: MIT, the licence of openai/consistency_models)")
    p.add_argument("--trained-on", help="cm.trained_on (default: data set and method of the kind)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random")
    p.add_argument("--external-data", choices=["auto", "always", "never"], default="auto",
                   help="weights in <out>.data beside the .onnx: auto = when over 1.8 GB (LSUN-256)")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), int(os.environ.get("CM_THREADS", "1")))))

    try:
        if a.random == bool(a.checkpoint):
            raise ConvertError("Expected either a checkpoint path or --random")
        kind = a.checkpoint_kind
        if a.random:
            arch = a.arch or (KINDS[kind]["arch"] if kind else None)
            if not arch:
                raise ConvertError("Expected --arch (or --checkpoint-kind) with --random")
            model = random_adm(arch, a.seed)
            if kind is None:
                kind = {"imagenet64": "cd_imagenet64_lpips", "lsun256": "cd_bedroom256_lpips"}.get(arch)
            grid, plans = (KINDS[kind]["grid"], KINDS[kind]["plans"]) if kind else (40, {"1": [0, 39]})
            name, lic = a.name or f"random-{arch}", a.license or "MIT"
            what, source = a.trained_on or "nothing: random weights, for tests only", f"random weights, seed {a.seed}"
        else:
            if not os.path.exists(a.checkpoint):
                raise ConvertError(f"{a.checkpoint}: no such file or folder")
            kind = kind or infer_kind(os.path.abspath(a.checkpoint))
            if kind is None:
                raise ConvertError(f"Cannot tell which release {a.checkpoint} is from its name; "
                                   f"pass --checkpoint-kind (one of {', '.join(KINDS)})")
            model = build(load_weights(a.checkpoint), a.arch)
            if model.cfg != PRESETS[KINDS[kind]["arch"]]:
                raise ConvertError(f"Expected {KINDS[kind]['arch']} weights for {kind} but these are the other architecture")
            grid, plans = KINDS[kind]["grid"], KINDS[kind]["plans"]
            name, lic = a.name or f"openai-{kind}", a.license or "MIT"
            what, source = a.trained_on or trained_on(kind), f"{RELEASE_URL.format(kind)} via cm convert"
        files = export_onnx(model, a.out, metadata(model, name, lic, what, grid, plans, source), a.external_data)
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for f in files:
        print(f"wrote {f} ({os.path.getsize(f)} bytes)")
    print(f"{count_params(model)} parameters; kind {kind or '-'}; grid {grid}; plans {json.dumps(plans)}; "
          f"classes {model.cfg.num_classes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
