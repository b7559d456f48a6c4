"""An int8 variant of a `cm` ONNX model: static quantization in the QDQ format, per-channel int8 weights.

  python3 -m cmtrain.quantize ../models/default.onnx ../models/default-int8.onnx   # calibrates on shared/data/train

Written here because onnxruntime's Python quantization tool is not installed (no PyPI); onnxruntime-node runs the
calibration (cmtrain/calibrate.mjs). Rules:
  * the Conv nodes are quantized (onnxruntime fuses DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv):
    activations as uint8 with a zero point (their range from calibration), weights as int8, symmetric, one scale per
    output channel, biases as int32 at scale x_scale * w_scale;
  * kept in float32: the first and last convolutions (`conv_in`, `conv_out`: the image's own precision), the noise
    path (every node that depends on sigma only: the embedding MLP and each block's projection, Gemm nodes), the
    normalisations, SiLU, the residual additions, and attention (its 1x1 convolutions, Einsum, Softmax) unless
    asked for; the skip combination c_skip * x + c_out * F stays exact, so f(x, sigma_min) == x still holds;
  * calibration: crops of the training photos (the validation photos excluded), half of them as they are and half
    blurred as a 4x box down- and nearest up-sampling (what super-resolution starts from), plus Gaussian noise at the
    noise levels the model's plans evaluate (cm.plans, cm.task_plans: every index but the last), the range of each
    tensor its min and max (or quantiles, --range);
  * metadata_props are copied; `cm.precision` = `int8`, `cm.quantized_from` = the SHA-256 of the float file (the CLI
    uses a variant only beside the very file it was made from) and `cm.int8_check` = the largest and mean absolute
    difference from the float model, in grey levels (0-255), on fixed inputs (validation crops, one noise draw per
    level of CHECK_SIGMAS), are set. The CLI's tolerance (src/runtime/precision.ts) is checked against it.
"""
import argparse
import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .fp16 import _constants_to_initializers, classify

HERE = os.path.dirname(os.path.abspath(__file__))
KEEP_FLOAT_CONVS = ("/net/conv_in/", "/net/conv_out/", "/net/attn/")
# The noise levels of the check: the edits' (0.01-1.4), colorize's and strokes' starts (3.5), generate's (14, 80).
CHECK_SIGMAS = (0.01, 0.09, 0.47, 1.38, 3.5, 14.0, 80.0)
NOISE_INPUT = "sigma"


def keep_float_for(arch: dict) -> tuple:
    """The convolutions kept in float32 for a model of this cm.architecture: KEEP_FLOAT_CONVS, and for a narrow
    full-resolution level (narrow_up: small-thin) also the decoder's convolutions at full resolution, the upsampling
    into it included. Measured on small-thin distilled 7,408 steps (2026-12-07): the default list gave max 30.1 /
    mean 1.21 grey levels against the float model (over the CLI's mean 1.0), with those in float 16.8 / 0.69, one
    call 0.62x small's int8 (bench/results/student.md)."""
    keep = KEEP_FLOAT_CONVS
    if arch.get("narrow_up"):
        levels = len(arch.get("mults", []))
        keep += (f"/net/up.{levels - 1}.", f"/net/upsample.{levels - 2}/")
    return keep


def karras_sigma(i: float, n: int, smin: float, smax: float, rho: float) -> float:
    a, b = smax ** (1 / rho), smin ** (1 / rho)
    return (a + i / (n - 1) * (b - a)) ** rho


def plan_sigmas(model: onnx.ModelProto) -> list:
    """The noise levels the model's plans evaluate (every grid index of cm.plans and cm.task_plans but the last)."""
    props = {p.key: p.value for p in model.metadata_props}
    n = int(props.get("cm.grid", "40"))
    smin, smax = float(props.get("cm.sigma_min", "0.002")), float(props.get("cm.sigma_max", "80"))
    rho = float(props.get("cm.rho", "7"))
    idx = set()
    for ts in json.loads(props.get("cm.plans", "{}")).values():
        idx |= set(ts[:-1])
    for task in json.loads(props.get("cm.task_plans", "{}")).values():
        for k, plan in task.items():
            if isinstance(plan, dict) and "ts" in plan:
                idx |= set(plan["ts"][:-1])
    # Plans without ts (denoise) start at the input's own noise: a few low levels cover them.
    idx |= {30, 33, 36, 38}
    return [karras_sigma(i, n, smin, smax, rho) for i in sorted(idx)]


def quantizable_convs(model: onnx.ModelProto, keep=KEEP_FLOAT_CONVS, noise_input: str = NOISE_INPUT) -> list:
    """Indices of the Conv nodes to quantize: weights as initializers, inputs not on the noise path, not kept."""
    info = classify(model, noise_input=noise_input)
    inits = {i.name for i in model.graph.initializer}
    out = []
    for k, node in enumerate(model.graph.node):
        if node.op_type != "Conv" or info["prec"][k] != "fp16":
            continue
        if any(s in node.name for s in keep):
            continue
        if node.input[1] not in inits or (len(node.input) > 2 and node.input[2] and node.input[2] not in inits):
            continue
        out.append(k)
    return out


def prepared(model: onnx.ModelProto) -> onnx.ModelProto:
    model = copy.deepcopy(model)
    _constants_to_initializers(model)
    return model


def activation_tensors(model: onnx.ModelProto, convs: list) -> list:
    names = []
    for k in convs:
        node = model.graph.node[k]
        for t in (node.input[0], node.output[0]):
            if t not in names:
                names.append(t)
    return names


def calibration_model(model: onnx.ModelProto, tensors: list) -> onnx.ModelProto:
    m = copy.deepcopy(model)
    for t in tensors:
        m.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    return m


def calibration_inputs(model: onnx.ModelProto, data_root: str, count: int, crop: int, seed: int):
    from .data import PhotoCrops
    rng = np.random.default_rng(seed)
    clean = PhotoCrops(data_root, crop, split="train", seed=seed).batch(count)
    half = count // 2
    # Blurred half: a 4x box down-sampling, nearest up-sampling (super-resolution's starting point).
    b = clean[:half].reshape(half, 3, crop // 4, 4, crop // 4, 4).mean(axis=(3, 5))
    clean[:half] = b.repeat(4, axis=2).repeat(4, axis=3)
    sig = plan_sigmas(model)
    sigma = np.array([sig[i % len(sig)] for i in range(count)], dtype=np.float32)
    rng.shuffle(sigma)
    x = clean + sigma[:, None, None, None] * rng.standard_normal(clean.shape).astype(np.float32)
    return x.astype(np.float32), sigma


def run_node(script: str, args: list) -> None:
    r = subprocess.run(["node", os.path.join(HERE, script) if not os.path.isabs(script) else script] + args,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{script} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")


def calibrate(model: onnx.ModelProto, tensors: list, x: np.ndarray, sigma: np.ndarray, batch: int = 8) -> dict:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "calib.onnx")
        onnx.save(calibration_model(model, tensors), path)
        x.astype("<f4").tofile(os.path.join(d, "x.bin"))
        sigma.astype("<f4").tofile(os.path.join(d, "s.bin"))
        run_node("calibrate.mjs", [path, ",".join(map(str, x.shape)), os.path.join(d, "x.bin"),
                                   os.path.join(d, "s.bin"), str(batch), os.path.join(d, "r.json")])
        with open(os.path.join(d, "r.json")) as f:
            return json.load(f)


def uint8_params(lo: float, hi: float):
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    zp = int(np.clip(round(-lo / scale), 0, 255))
    return np.float32(scale), np.uint8(zp)


def to_int8(model: onnx.ModelProto, ranges: dict, convs: list, range_kind: str = "minmax") -> onnx.ModelProto:
    """The QDQ int8 variant of a prepared model (see the module's docstring). Pure: `model` is not changed."""
    model = copy.deepcopy(model)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    lo_key, hi_key = {"minmax": ("min", "max"), "q9999": ("q0001", "q9999"), "q999": ("q001", "q999")}[range_kind]
    new_inits, dq_of, act_scale = [], {}, {}
    before = {}  # node index -> nodes to insert before it

    def qdq(t: str, at: int) -> str:
        """A QuantizeLinear/DequantizeLinear pair on tensor t (once per tensor); the dequantized name."""
        if t in dq_of:
            return dq_of[t]
        r = ranges[t]
        s, zp = uint8_params(r[lo_key], r[hi_key])
        act_scale[t] = s
        sn, zn = f"{t}__scale", f"{t}__zp"
        new_inits.extend([numpy_helper.from_array(np.array(s, dtype=np.float32), sn),
                          numpy_helper.from_array(np.array(zp, dtype=np.uint8), zn)])
        q, dq = f"{t}__q", f"{t}__dq"
        before.setdefault(at, []).extend([
            helper.make_node("QuantizeLinear", [t, sn, zn], [q], name=f"{t}/QuantizeLinear"),
            helper.make_node("DequantizeLinear", [q, sn, zn], [dq], name=f"{t}/DequantizeLinear"),
        ])
        dq_of[t] = dq
        return dq

    producer = {o: k for k, n in enumerate(g.node) for o in n.output}
    rename = {}  # conv output -> its dequantized name, for every later reader
    for k in convs:
        node = g.node[k]
        x = node.input[0]
        node.input[0] = qdq(x, producer.get(x, 0) + 1 if x in producer else 0) if x not in dq_of else dq_of[x]
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        ws = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        wq = np.clip(np.round(w / ws[:, None, None, None]), -127, 127).astype(np.int8)
        wn = node.input[1]
        new_inits.extend([numpy_helper.from_array(wq, f"{wn}__int8"), numpy_helper.from_array(ws, f"{wn}__scale"),
                          numpy_helper.from_array(np.zeros_like(wq[:, 0, 0, 0]), f"{wn}__zp")])
        before.setdefault(k, []).append(helper.make_node(
            "DequantizeLinear", [f"{wn}__int8", f"{wn}__scale", f"{wn}__zp"], [f"{wn}__dq"], axis=0,
            name=f"{wn}/DequantizeLinear"))
        node.input[1] = f"{wn}__dq"
        if len(node.input) > 2 and node.input[2]:
            bn = node.input[2]
            b = numpy_helper.to_array(inits[bn]).astype(np.float64)
            bs = (act_scale[x] * ws).astype(np.float32)
            bq = np.clip(np.round(b / bs), -2**31, 2**31 - 1).astype(np.int32)
            new_inits.extend([numpy_helper.from_array(bq, f"{bn}__int32_{k}"),
                              numpy_helper.from_array(bs, f"{bn}__scale_{k}"),
                              numpy_helper.from_array(np.zeros_like(bq), f"{bn}__zp_{k}")])
            before[k].append(helper.make_node(
                "DequantizeLinear", [f"{bn}__int32_{k}", f"{bn}__scale_{k}", f"{bn}__zp_{k}"], [f"{bn}__dq_{k}"],
                axis=0, name=f"{bn}/DequantizeLinear_{k}"))
            node.input[2] = f"{bn}__dq_{k}"
        # The output: Conv -> Q -> DQ -> every reader.
        y = node.output[0]
        raw = f"{y}__float"
        node.output[0] = raw
        r = ranges[y]
        s, zp = uint8_params(r[lo_key], r[hi_key])
        act_scale[y] = s
        sn, zn = f"{y}__scale", f"{y}__zp"
        new_inits.extend([numpy_helper.from_array(np.array(s, dtype=np.float32), sn),
                          numpy_helper.from_array(np.array(zp, dtype=np.uint8), zn)])
        before.setdefault(k + 1, []).extend([
            helper.make_node("QuantizeLinear", [raw, sn, zn], [f"{y}__q"], name=f"{y}/QuantizeLinear"),
            helper.make_node("DequantizeLinear", [f"{y}__q", sn, zn], [y], name=f"{y}/DequantizeLinear"),
        ])
        dq_of[y] = y  # already dequantized under its own name
    nodes = []
    for k, node in enumerate(g.node):
        nodes.extend(before.get(k, []))
        nodes.append(node)
    nodes.extend(before.get(len(g.node), []))
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep + [i for i in new_inits if i.name in used])
    _toposort(g)
    del g.value_info[:]
    set_prop(model, "cm.precision", "int8")
    if not any(o.domain in ("", "ai.onnx") and o.version >= 13 for o in model.opset_import):
        raise ValueError("per-channel QDQ needs opset 13 or later")
    onnx.checker.check_model(model)
    return model


def _toposort(g) -> None:
    """Order the nodes so that every input is produced before it is read (inserted pairs may precede producers)."""
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending, out = list(g.node), []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                out.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError("the quantized graph has a cycle or an unproduced input")
        pending = rest
    del g.node[:]
    g.node.extend(out)


def run_model(path: str, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    script = os.path.join(HERE, "..", "tests", "run_onnx.mjs")
    with tempfile.TemporaryDirectory() as d:
        x.astype("<f4").tofile(os.path.join(d, "x.bin"))
        sigma.astype("<f4").tofile(os.path.join(d, "s.bin"))
        run_node(script, [path, ",".join(map(str, x.shape)), os.path.join(d, "x.bin"), os.path.join(d, "s.bin"),
                          os.path.join(d, "o.bin")])
        return np.fromfile(os.path.join(d, "o.bin"), dtype="<f4").reshape(x.shape)


def check_inputs(data_root: str, per_sigma: int = 4, crop: int = 64, seed: int = 1):
    """Fixed inputs for the check: validation crops (held out of training) plus noise at each of CHECK_SIGMAS."""
    from .data import PhotoCrops
    clean = PhotoCrops(data_root, crop, split="val", seed=seed).batch(per_sigma * len(CHECK_SIGMAS))
    sigma = np.repeat(np.array(CHECK_SIGMAS, dtype=np.float32), per_sigma)
    rng = np.random.default_rng(seed)
    x = clean + sigma[:, None, None, None] * rng.standard_normal(clean.shape).astype(np.float32)
    return x.astype(np.float32), sigma


def difference(a: np.ndarray, b: np.ndarray, sigma: np.ndarray) -> dict:
    """The largest and mean absolute difference in grey levels (outputs in [-1, 1], clamped as the sampler does),
    overall and per noise level."""
    d = np.abs(np.clip(a, -1, 1) - np.clip(b, -1, 1)) * 127.5
    per = {f"{s:g}": [round(float(d[sigma == s].max()), 3), round(float(d[sigma == s].mean()), 4)]
           for s in sorted(set(sigma.tolist()))}
    return {"max": round(float(d.max()), 3), "mean": round(float(d.mean()), 4), "per_sigma": per}


def set_prop(model: onnx.ModelProto, key: str, value: str) -> None:
    for entry in model.metadata_props:
        if entry.key == key:
            entry.value = value
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = key, value


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m cmtrain.quantize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="a cm ONNX model (float32)")
    p.add_argument("output", help="where to write the int8 variant")
    p.add_argument("--data", default=os.path.join(HERE, "..", "..", "..", "shared", "data", "train"),
                   help="calibration photos (default /work/shared/data/train; validation photos are left out)")
    p.add_argument("--count", type=int, default=256, help="calibration crops")
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--range", dest="range_kind", default="q9999", choices=["minmax", "q9999", "q999"],
                   help="each activation's range: min-max, or its 0.01%%-99.99%% (q9999) or 0.1%%-99.9%% quantiles")
    p.add_argument("--keep-float",
                   help="comma-separated substrings of Conv node names kept in float32 (default: "
                        f"{','.join(KEEP_FLOAT_CONVS)}, and a narrow full-resolution level's decoder: keep_float_for)")
    a = p.parse_args(argv)
    source = onnx.load(a.input)
    meta = {e.key: e.value for e in source.metadata_props}
    model = prepared(source)
    keep = (tuple(s for s in a.keep_float.split(",") if s) if a.keep_float is not None
            else keep_float_for(json.loads(meta.get("cm.architecture", "{}") or "{}")))
    convs = quantizable_convs(model, keep)
    tensors = activation_tensors(model, convs)
    data = os.path.abspath(a.data)
    x, sigma = calibration_inputs(model, data, a.count, a.crop, a.seed)
    ranges = calibrate(model, tensors, x, sigma)
    q = to_int8(model, ranges, convs, a.range_kind)
    set_prop(q, "cm.quantized_from", file_sha256(a.input))
    onnx.save(q, a.output)
    cx, cs = check_inputs(data)
    diff = difference(run_model(a.output, cx, cs), run_model(a.input, cx, cs), cs)
    set_prop(q, "cm.int8_check", json.dumps({"max": diff["max"], "mean": diff["mean"], "sigmas": list(CHECK_SIGMAS),
                                             "crops": len(cs)}, separators=(",", ":")))
    onnx.save(q, a.output)
    print(json.dumps(diff), file=sys.stderr)
    print(f"{a.output}: {len(convs)} of {sum(n.op_type == 'Conv' for n in model.graph.node)} convolutions in int8, "
          f"{os.path.getsize(a.output)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
