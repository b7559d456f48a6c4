"""Export a consistency model to a `cm` ONNX file (model contract version 1, ARCHITECTURE.md).

  python3 -m cmtrain.export --checkpoint runs/default/last.pt --out ../models/cm-default.onnx \
      --name cm-default --license CC-BY-SA-4.0 --trained-on "..."
  python3 -m cmtrain.export --random --preset tiny --seed 0 --out ../fixtures/tiny-random.onnx \
      --name tiny-random --license MIT --trained-on "nothing: random weights, for tests only" \
      --ref ../fixtures/tiny-random.ref.json
"""
import argparse
import base64
import inspect
import json
import os
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper
import torch

from .consistency import RHO, SIGMA_DATA, SIGMA_MAX, SIGMA_MIN, ConsistencyModel, check_plans
from .unet import PRESETS, ResBlock, UNetConfig, count_params

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
    return _model_of(ckpt["config"], ckpt["ema"] if use_ema else ckpt["model"])


def _model_of(config: dict, state: dict) -> ConsistencyModel:
    model = ConsistencyModel(UNetConfig(**{**config, "mults": tuple(config["mults"])}))
    model.load_state_dict(state)
    return model.eval()


def read_metadata(path: str) -> dict:
    return {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}


def load_onnx_weights(path: str) -> ConsistencyModel:
    """The ConsistencyModel whose weights are the initializers of a `cm` ONNX file made by export_onnx (its
    `cm.architecture` names the UNet), so that training can continue from a shipped model without its checkpoint.
    The exporter renames some parameters (GroupNorm's affine weights become anonymous Mul/Add constants), so the
    names are matched by exporting a copy of the architecture whose every parameter holds distinct values and
    pairing equal tensors; every parameter must be found exactly once."""
    meta = read_metadata(path)
    arch = json.loads(meta.get("cm.architecture", "null") or "null")
    if not arch or arch.get("type") != "unet":
        raise ValueError(f"{path}: no cm.architecture of type unet (not a model made by cmtrain.export)")
    cfg = UNetConfig(**{k: (tuple(v) if k == "mults" else v) for k, v in arch.items() if k != "type"})
    shipped = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    # Files exported before ResBlock folded norm2's weights (ResBlock.fold_norm) name their initializers otherwise:
    # the probe is exported both ways, and the one whose names the file has is used.
    errors = []
    for fold in (True, False):
        try:
            return _weights_by_probe(path, cfg, shipped, fold)
        except ValueError as e:
            errors.append(str(e))
    raise ValueError(errors[0])


def save_weights(model: ConsistencyModel, path: str, **info) -> None:
    """The model's architecture and weights as a small torch file that load_weights reads with any torch version (an
    ONNX file is read by exporting a probe, whose initializer names depend on the torch that exports it)."""
    torch.save({"config": model.net.cfg.to_json_dict(), "state_dict": model.state_dict(), **info}, path)


def load_weights(path: str) -> ConsistencyModel:
    """A cm ONNX file (load_onnx_weights), a file of save_weights, or a training checkpoint (its EMA weights)."""
    if path.endswith(".onnx"):
        return load_onnx_weights(path)
    ck = torch.load(path, map_location="cpu")
    return _model_of(ck["config"], ck["state_dict"] if "state_dict" in ck else ck["ema"])


def _weights_by_probe(path: str, cfg: UNetConfig, shipped: dict, fold: bool) -> ConsistencyModel:
    probe = ConsistencyModel(cfg).eval()
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in probe.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) + 1.0)   # distinct, never 0 or 1 (no folding into identities)
    _set_fold_norm(probe, fold)
    with tempfile.TemporaryDirectory() as tmp:
        probe_path = os.path.join(tmp, "probe.onnx")
        export_onnx(probe, probe_path, {})
        probe_graph = onnx.load(probe_path).graph
        probe_inits = {i.name: numpy_helper.to_array(i) for i in probe_graph.initializer}
    # The exporter drops a Mul by ones or an Add of zeros (a GroupNorm that still has its initial affine weights):
    # such a parameter is missing from the file, and the operator that would have used it says which it was.
    consumer = {name: node.op_type for node in probe_graph.node for name in node.input}
    identity = {"Mul": 1.0, "Add": 0.0}
    by_bytes = {}
    for name, arr in probe_inits.items():
        by_bytes.setdefault((arr.astype(np.float32).tobytes()), []).append(name)
    state = {}
    for key, p in probe.state_dict().items():
        want = p.detach().numpy().astype(np.float32)
        names = [n for n in by_bytes.get(want.tobytes(), []) if probe_inits[n].size == want.size]
        if len(names) < 1:
            raise ValueError(f"{path}: no initializer for parameter {key}")
        if names[0] in shipped:
            state[key] = torch.from_numpy(np.array(shipped[names[0]], dtype=np.float32).reshape(want.shape))
        elif consumer.get(names[0]) in identity:
            state[key] = torch.full(want.shape, identity[consumer[names[0]]])
        else:
            raise ValueError(f"{path}: no initializer {names[0]} for parameter {key}")
    model = ConsistencyModel(cfg)
    model.load_state_dict(state)
    # Exported again the same way, the weights give the file's initializers, every one: else they were paired wrongly.
    _set_fold_norm(model, fold)
    with tempfile.TemporaryDirectory() as tmp:
        again = os.path.join(tmp, "again.onnx")
        export_onnx(model.eval(), again, {})
        inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(again).graph.initializer}
    if set(inits) != set(shipped) or any(not np.array_equal(inits[n], shipped[n]) for n in inits):
        raise ValueError(f"{path}: its initializers are not those of this architecture")
    _set_fold_norm(model, ResBlock.fold_norm)
    return model.eval()


def _set_fold_norm(model, fold: bool) -> None:
    """Every ResBlock of `model` computes (and so exports) norm2 folded or not (ResBlock.fold_norm)."""
    for m in model.modules():
        if isinstance(m, ResBlock):
            m.fold_norm = fold


def drop_unit_affine(proto) -> int:
    """Remove the multiply by ones and the add of zeros that torch 1.13 exports after a group norm without weights
    (Reshape -> InstanceNormalization -> Reshape -> Mul(1) -> Add(0), each at full size; unet.ResBlock folds norm2's
    weights into its own multiply-add). Only that pattern, and only constants that are exactly 1 and 0, so the graph
    computes the same values. Returns the number of nodes removed."""
    g = proto.graph
    producer = {o: n for n in g.node for o in n.output}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    consts.update({i.name: numpy_helper.to_array(i) for i in g.initializer})

    def after_group_norm(name: str) -> bool:
        r = producer.get(name)
        return r is not None and r.op_type == "Reshape" and producer.get(r.input[0]) is not None \
            and producer[r.input[0]].op_type == "InstanceNormalization"

    drop = {}   # a removed node's output -> the value that replaces it
    for n in g.node:
        if n.op_type not in ("Mul", "Add") or len(n.input) != 2:
            continue
        unit = 1.0 if n.op_type == "Mul" else 0.0
        for data, const in ((0, 1), (1, 0)):
            c = consts.get(n.input[const])
            src = drop.get(n.input[data], n.input[data])
            if c is not None and c.size > 0 and c.ndim <= 3 and np.all(c == unit) and after_group_norm(src):
                drop[n.output[0]] = src
                break
    if not drop:
        return 0
    keep = [n for n in g.node if n.output[0] not in drop]
    for n in keep:
        for i, name in enumerate(n.input):
            if name in drop:
                n.input[i] = drop[name]
    for o in g.output:
        if o.name in drop:
            raise ValueError(f"drop_unit_affine: graph output {o.name} would be removed")
    # The constants only those nodes used go too.
    used = {name for n in keep for name in n.input} | {o.name for o in g.output}
    keep = [n for n in keep if n.op_type != "Constant" or n.output[0] in used]
    unused = [i for i in g.initializer if i.name not in used]
    for i in unused:
        g.initializer.remove(i)
    del g.node[:]
    g.node.extend(keep)
    return len(drop)


def export_onnx(model: ConsistencyModel, out: str, meta: dict) -> None:
    """Trace with dynamic N, H, W, then attach metadata_props; always one self-contained file."""
    res = 2 ** (len(model.net.cfg.mults) - 1) * model.net.cfg.unshuffle
    x = torch.randn(2, 3, 8 * res, 8 * res)
    sigma = torch.tensor([1.0, 10.0])
    dyn = {"x": {0: "N", 2: "H", 3: "W"}, "sigma": {0: "N"}, "denoised": {0: "N", 2: "H", 3: "W"}}
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.onnx")
        with torch.no_grad():
            # The TorchScript exporter: torch 2.9 and later default to another one (dynamo), whose graphs and
            # initializer names differ from those this code reads.
            legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
            torch.onnx.export(model, (x, sigma), raw, input_names=["x", "sigma"], output_names=["denoised"],
                              dynamic_axes=dyn, opset_version=17, do_constant_folding=True, **legacy)
        proto = onnx.load(raw)
    drop_unit_affine(proto)
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


PLAN_TASKS = ("inpaint", "colorize", "superres-x2", "superres-x4", "superres-x8", "denoise", "stroke", "generate",
              "interpolate")


def check_task_plans(task_plans: dict, grid: int = GRID) -> None:
    """cm.task_plans: task -> evaluations -> {ts, start, eta, samples}, "default": the evaluations --steps defaults
    to, and "refine" (optional): the grid indices of coarse to fine's finer levels (the CLI's src/runtime/card.ts
    checks the same)."""
    if not isinstance(task_plans, dict):
        raise ValueError(f"Expected an object of task -> evaluations -> plan but received {task_plans!r}")
    def check_entry(task, k, entry):
        if task != "denoise":
            check_plans({k: entry["ts"]}, grid)
        elif "ts" in entry:
            raise ValueError("denoise plans take no ts (denoising starts at the image's noise level)")
        if entry.get("start", "known") not in ("known", "estimate") or not 0 <= entry.get("eta", 1) <= 1 \
                or not 1 <= int(entry.get("samples", 1)) <= 64 or not isinstance(entry.get("views", False), bool):
            raise ValueError(f"Expected start known|estimate, eta in [0, 1], samples 1..64, views true|false in {task} "
                             f"{k}: {entry}")

    for task, by_k in task_plans.items():
        if task not in PLAN_TASKS:
            raise ValueError(f"Expected a task among {', '.join(PLAN_TASKS)} but received {task!r}")
        if "default" in by_k and (not isinstance(by_k["default"], int) or str(by_k["default"]) not in by_k):
            raise ValueError(f"Expected {task}'s default to name one of its entries but received {by_k['default']!r}")
        if "refine" in by_k:
            r = by_k["refine"]
            if not isinstance(r, list) or len(r) < 2:
                raise ValueError(f"Expected {task}'s refine to be a plan (grid indices) but received {r!r}")
            check_plans({str(len(r) - 1): r}, grid)
        for k, entry in by_k.items():
            if k in ("default", "refine"):
                continue
            if k in ("fast", "best"):      # --quality presets: an entry's number, or an entry with its own k
                if isinstance(entry, int):
                    if str(entry) not in by_k:
                        raise ValueError(f"Expected {task}'s {k} to name one of its entries but received {entry!r}")
                    continue
                kk = entry.get("k", len(entry.get("ts", [])) - 1)
                check_entry(task, str(kk), {n: v for n, v in entry.items() if n != "k"})
                continue
            check_entry(task, k, entry)


def merge_task_plans(old: dict, found: dict) -> dict:
    """old's cm.task_plans with every task of `found` (a plan search's) replaced, keeping each task's "refine": coarse
    to fine's finer levels are chosen through the CLI (bench/refinesearch.mjs), which the plan search does not see."""
    keep = lambda t: {"refine": old[t]["refine"]} if "refine" in old.get(t, {}) and "refine" not in found[t] else {}
    return {**old, **{t: {**plans, **keep(t)} for t, plans in found.items()}}


def metadata(model: ConsistencyModel, name: str, license: str, trained_on: str, plans: dict,
             task_plans: dict = None) -> dict:
    check_plans(plans, GRID)
    extra = {}
    if task_plans:
        check_task_plans(task_plans)
        extra["cm.task_plans"] = json.dumps(task_plans, separators=(",", ":"))
    return {**extra,
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
    src.add_argument("--from-onnx", help="the weights of a cm ONNX file made by this exporter (e.g. to give the shipped "
                                         "model new plans)")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="architecture for --random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--raw-weights", action="store_true", help="export the trained weights instead of the EMA")
    p.add_argument("--out", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--license", required=True)
    p.add_argument("--trained-on", required=True)
    p.add_argument("--plans", default=json.dumps(DEFAULT_PLANS), help='JSON, e.g. {"1":[0,39],"2":[0,22,39]}')
    p.add_argument("--task-plans", help="per-task defaults (cm.task_plans): JSON, or a file holding it, e.g. "
                                        "results/task_plans.json written by bench/plansearch.mjs")
    p.add_argument("--ref", help="also write a PyTorch reference JSON (x, sigma, denoised) here")
    a = p.parse_args(argv)

    task_plans = None
    if a.task_plans:
        text = open(a.task_plans).read() if os.path.isfile(a.task_plans) else a.task_plans
        task_plans = json.loads(text)
    if a.random:
        model = random_model(a.preset, a.seed)
    elif a.from_onnx:
        model = load_onnx_weights(a.from_onnx)
    else:
        model = load_checkpoint(a.checkpoint, not a.raw_weights)
    export_onnx(model, a.out, metadata(model, a.name, a.license, a.trained_on, json.loads(a.plans), task_plans))
    print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes, {count_params(model)} parameters)")
    if a.ref:
        write_reference(model, a.ref, a.seed)
        print(f"wrote {a.ref} ({os.path.getsize(a.ref)} bytes)")


if __name__ == "__main__":
    main()
