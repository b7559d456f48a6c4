"""An fp16 variant of a `cm` ONNX model: float16 trunk, float32 inputs, outputs, noise path and skip path.

  python3 -m cmtrain.fp16 ../models/default.onnx /tmp/default-fp16.onnx
  python3 -m cmtrain.fp16 IN.onnx OUT.onnx --keep-fp32-ops InstanceNormalization,Softmax,Einsum   # bisecting

Rules (to_fp16), for a graph whose inputs are the image `x` and the noise level `sigma`:
  * the graph inputs and outputs keep their names, float32 type and (dynamic) shapes;
  * float32 stays for every node whose value depends only on `sigma` (c_skip, c_out, c_in, c_noise, the sinusoidal
    embedding, the embedding MLP and every ResBlock's embedding projection): they are [N] or [N, C] tensors, cheap,
    and their weights are few (16% of the default model's); the sinusoid's argument (up to ~26 rad) would be off
    by up to 0.008 rad in float16;
  * float32 stays for the input side (element-wise nodes whose float inputs are all graph inputs, sigma-only
    tensors or constants: c_skip * x, c_in * x, so that x is never rounded) and for the output side, the boundary-condition combination
    c_skip * x + c_out * F walked back from the graph output through element-wise nodes that take a sigma-only or
    graph-input operand, so that the skip path c_skip * x is exact (f(x, sigma_min) == x still holds bit for bit);
  * float32 stays for the op types in `keep_ops` (default KEEP_FP32_OPS: the normalisations, whose variance
    sums squares over a whole group: held in float16, that sum overflows past 65504, e.g. one element of |h| > 256
    or 4096 elements of |h| = 4; and the attention softmax) and for the nodes named in `keep_nodes`;
  * every other node with a float output runs in float16; their float initializers (and Constant nodes, which
    become initializers) are stored as float16; a constant that both precisions read is stored once in each;
  * a Cast node is inserted on each edge where a float32 and a float16 node meet (one per tensor and direction);
  * inputs whose operator schema fixes them to tensor(float) (Resize's scales) stay float32;
  * metadata_props are copied unchanged and `cm.precision` = `fp16` is set.
Shape-only nodes (Shape, and the int64 arithmetic on shapes) are left as they are.
"""
import argparse
import copy
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
# Where float16 overflows or loses the most: normalisations (sums of squares, means over many elements) and softmax.
KEEP_FP32_OPS = frozenset({
    "InstanceNormalization", "GroupNormalization", "LayerNormalization", "BatchNormalization",
    "LpNormalization", "MeanVarianceNormalization", "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2",
    "ReduceLogSumExp", "Pow", "Softmax", "LogSoftmax",
})
# Element-wise nodes that may form the boundary-condition combination c_skip * x + c_out * F at the output.
COMBINE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Cast", "Identity"})
# Nodes without float outputs that read a float input whatever its precision.
ANY_TYPE_OPS = frozenset({"Shape", "Size"})
NOISE_INPUT = "sigma"


def _elem_types(model: onnx.ModelProto) -> dict:
    inferred = shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    types = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    return types


def _convertible(node: onnx.NodeProto, index: int, opset: int) -> bool:
    """Whether input `index` of `node` may be float16 when the node runs in float16 (its schema's type is a type
    parameter that allows tensor(float16), not a fixed tensor(float))."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except Exception:
        return True
    formal = schema.inputs[min(index, len(schema.inputs) - 1)]
    if formal.typeStr.startswith("tensor("):
        return formal.typeStr == "tensor(float16)"
    allowed = {t for c in schema.type_constraints if c.type_param_str == formal.typeStr for t in c.allowed_type_strs}
    return "tensor(float16)" in allowed


def _half_tensor(t: onnx.TensorProto, name: str) -> onnx.TensorProto:
    a = numpy_helper.to_array(t).astype(np.float32)
    finite = np.abs(a[np.isfinite(a)])
    if finite.size and finite.max() > 65504.0:
        raise ValueError(f"{t.name}: a float constant ({finite.max():g}) out of float16's range")
    return numpy_helper.from_array(a.astype(np.float16), name)


def classify(model: onnx.ModelProto, keep_ops=KEEP_FP32_OPS, keep_nodes=(), noise_input: str = NOISE_INPUT) -> dict:
    """Node index -> 'fp16' | 'fp32' | 'none' (no float output: left as it is), for a graph whose float Constant
    nodes have been made initializers. Also returns why each fp32 node is fp32 (under key 'why')."""
    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    types = _elem_types(model)
    graph_inputs = {i.name for i in g.input}
    inits = {i.name for i in g.initializer}
    if noise_input not in graph_inputs:
        raise ValueError(f"the graph has no input {noise_input!r}")
    deps = {name: {name} for name in graph_inputs}
    for name in inits:
        deps.setdefault(name, set())
    producer = {}
    for k, node in enumerate(g.node):
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise NotImplementedError(f"{node.name or node.op_type}: subgraphs are not supported")
        d = set()
        for i in node.input:
            if i:
                if i not in deps:
                    raise ValueError(f"{node.name or node.op_type}: input {i} is used before it is produced")
                d |= deps[i]
        for o in node.output:
            deps[o] = d
            producer[o] = k
    consumers = {}
    for k, node in enumerate(g.node):
        for i in node.input:
            consumers.setdefault(i, []).append(k)

    is_float = lambda t: bool(t) and types.get(t) == FLOAT
    sigma_only = lambda t: deps.get(t) == {noise_input}
    const = lambda t: t in inits or deps.get(t) == set()
    fixed = lambda t: t in graph_inputs or sigma_only(t) or const(t)

    prec, why = {}, {}
    for k, node in enumerate(g.node):
        if not any(is_float(o) for o in node.output):
            prec[k] = "none"
        elif sigma_only(node.output[0]):
            prec[k], why[k] = "fp32", "sigma-only"
        elif deps[node.output[0]] == set():
            prec[k] = "const"
        elif node.op_type in COMBINE_OPS and all(fixed(i) for i in node.input if is_float(i)):
            prec[k], why[k] = "fp32", "input side"
        elif node.op_type in keep_ops or node.name in keep_nodes:
            prec[k], why[k] = "fp32", "kept op"
        else:
            prec[k] = "fp16"
    # The output combination: from each graph output back through element-wise nodes with a fixed operand.
    stack = [producer[o.name] for o in g.output if o.name in producer]
    first = set(stack)
    while stack:
        k = stack.pop()
        node = g.node[k]
        if node.op_type not in COMBINE_OPS or prec[k] == "none":
            continue
        if k not in first and not any(fixed(i) for i in node.input if is_float(i)):
            continue
        if prec[k] == "fp16":
            prec[k], why[k] = "fp32", "output combination"
        stack += [producer[i] for i in node.input if i in producer]
    # Constant-only nodes (e.g. Identity of a weight): float16 when every reader of their float outputs is.
    for k in reversed(range(len(g.node))):
        if prec[k] != "const":
            continue
        readers = [c for o in g.node[k].output if is_float(o) for c in consumers.get(o, [])]
        readers_prec = {prec[c] for c in readers}
        outs_are_graph_outputs = any(o.name in g.node[k].output for o in g.output)
        if readers and readers_prec == {"fp16"} and not outs_are_graph_outputs:
            prec[k] = "fp16"
        else:
            prec[k], why[k] = "fp32", "constant read in float32"
    return {"prec": prec, "why": why, "types": types, "opset": opset, "deps": deps}


def _constants_to_initializers(model: onnx.ModelProto) -> None:
    """Float Constant nodes (value = a tensor) become initializers of the same name."""
    g = model.graph
    keep = []
    for node in g.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1 \
                and node.attribute[0].name == "value" and node.attribute[0].t.data_type == FLOAT:
            t = copy.deepcopy(node.attribute[0].t)
            t.name = node.output[0]
            g.initializer.append(t)
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)


def _prepared(model: onnx.ModelProto, keep_ops, keep_nodes, noise_input: str):
    """A copy of the model with its float constants as initializers, and its nodes classified."""
    model = copy.deepcopy(model)
    _constants_to_initializers(model)
    return model, classify(model, keep_ops, keep_nodes, noise_input)


def _finish(model: onnx.ModelProto, precision: str) -> onnx.ModelProto:
    """Drop the stale shape annotations, set cm.precision (replacing an earlier one) and check the model."""
    del model.graph.value_info[:]
    for entry in model.metadata_props:
        if entry.key == "cm.precision":
            entry.value = precision
            break
    else:
        entry = model.metadata_props.add()
        entry.key, entry.value = "cm.precision", precision
    onnx.checker.check_model(model)
    return model


def to_fp16(model: onnx.ModelProto, keep_ops=KEEP_FP32_OPS, keep_nodes=(), noise_input: str = NOISE_INPUT
            ) -> onnx.ModelProto:
    """The float16 variant of a cm model (see the module's docstring for the rules). Pure: `model` is not changed."""
    model, info = _prepared(model, keep_ops, keep_nodes, noise_input)
    g = model.graph
    prec, types, opset = info["prec"], info["types"], info["opset"]
    graph_inputs = {i.name for i in g.input}
    init = {i.name: i for i in g.initializer}

    dtype = {name: FLOAT for name in graph_inputs if types.get(name) == FLOAT}
    dtype.update({name: t.data_type for name, t in init.items()})
    used_inits, new_inits, casts = set(), {}, {}
    nodes = []

    def as_type(name: str, want: int) -> str:
        if name in init:
            if want == init[name].data_type:
                used_inits.add(name)
                return name
            key = f"{name}__fp16"
            if key not in new_inits:
                new_inits[key] = _half_tensor(init[name], key)
            return key
        if dtype[name] == want:
            return name
        key = (name, want)
        if key not in casts:
            out = f"{name}__to_{'fp16' if want == HALF else 'fp32'}"
            nodes.append(helper.make_node("Cast", [name], [out], name=f"{out}__cast", to=want))
            casts[key] = out
        return casts[key]

    for k, node in enumerate(g.node):
        node = copy.deepcopy(node)
        p = prec[k]
        for idx, name in enumerate(node.input):
            if not name or types.get(name) != FLOAT:
                if name in init:
                    used_inits.add(name)
                continue
            if p == "fp16":
                want = HALF if _convertible(node, idx, opset) else FLOAT
            elif p == "none" and node.op_type in ANY_TYPE_OPS:
                want = dtype[name]
            else:
                want = FLOAT
            node.input[idx] = as_type(name, want)
        if p == "fp16":
            for a in node.attribute:
                if node.op_type == "Cast" and a.name == "to" and a.i == FLOAT:
                    a.i = HALF
                if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == FLOAT:
                    a.t.CopyFrom(_half_tensor(a.t, a.t.name))
        for o in node.output:
            if o:
                t = types.get(o)
                dtype[o] = HALF if (p == "fp16" and t == FLOAT) else t
        nodes.append(node)

    # A graph output computed in float16 (not the case for a cm graph, whose output combination is float32).
    for out in g.output:
        if dtype.get(out.name) == HALF:
            inner = f"{out.name}__fp16"
            for n in nodes:
                n.input[:] = [inner if i == out.name else i for i in n.input]
                n.output[:] = [inner if o == out.name else o for o in n.output]
            nodes.append(helper.make_node("Cast", [inner], [out.name], name=f"{out.name}__cast", to=FLOAT))

    del g.node[:]
    g.node.extend(nodes)
    kept = [t for name, t in init.items() if name in used_inits]
    del g.initializer[:]
    g.initializer.extend(kept + list(new_inits.values()))
    return _finish(model, "fp16")


def emulate_fp16(model: onnx.ModelProto, keep_ops=KEEP_FP32_OPS, keep_nodes=(), noise_input: str = NOISE_INPUT
                 ) -> onnx.ModelProto:
    """A float32 model that computes what to_fp16's variant computes with float16 storage and float32 arithmetic
    inside each op (as GPU kernels that accumulate in float32 do): the weights of the float16 nodes are rounded to
    float16 values, and every float tensor those nodes read or write is rounded to float16 (a Cast to float16 and
    back). For measuring the variant's error on a CPU: onnxruntime's CPU provider has no float16 kernels for most
    ops, runs them in float32 between inserted casts and then drops the casts between consecutive such ops, so the
    variant itself, run there, rounds fewer activations than a GPU would. Pure."""
    model, info = _prepared(model, keep_ops, keep_nodes, noise_input)
    g = model.graph
    prec, types, opset = info["prec"], info["types"], info["opset"]
    init = {i.name: i for i in g.initializer}
    rounded_by = {}     # tensor -> its float16-rounded twin
    new_inits, nodes = [], []

    def rounding(src: str, dst: str) -> None:
        nodes.append(helper.make_node("Cast", [src], [f"{dst}__h"], name=f"{dst}__h__cast", to=HALF))
        nodes.append(helper.make_node("Cast", [f"{dst}__h"], [dst], name=f"{dst}__cast", to=FLOAT))

    for k, node in enumerate(g.node):
        node = copy.deepcopy(node)
        if prec[k] != "fp16":
            nodes.append(node)
            continue
        for idx, name in enumerate(node.input):
            if not name or types.get(name) != FLOAT or not _convertible(node, idx, opset):
                continue
            if name not in rounded_by:
                twin = f"{name}__r16"
                if name in init:
                    a = numpy_helper.to_array(init[name]).astype(np.float16).astype(np.float32)
                    new_inits.append(numpy_helper.from_array(a, twin))
                else:
                    rounding(name, twin)
                rounded_by[name] = twin
            node.input[idx] = rounded_by[name]
        raw = [o for o in node.output if o and types.get(o) == FLOAT]
        node.output[:] = [f"{o}__raw" if o in raw else o for o in node.output]
        nodes.append(node)
        for o in raw:
            rounded_by[o] = o  # rounded under its own name
            rounding(f"{o}__raw", o)
    del g.node[:]
    g.node.extend(nodes)
    read = {i for n in nodes for i in n.input}
    kept = [t for t in list(g.initializer) + new_inits if t.name in read]
    del g.initializer[:]
    g.initializer.extend(kept)
    return _finish(model, "fp16-emulated")


def summary(src: onnx.ModelProto, dst: onnx.ModelProto) -> str:
    count = lambda m, dt: sum(1 for n in m.graph.node if n.op_type == "Cast" and n.attribute[0].i == dt)
    nbytes = lambda m, dt: sum(numpy_helper.to_array(t).nbytes for t in m.graph.initializer if t.data_type == dt)
    return (f"{len(dst.graph.node)} nodes ({len(src.graph.node)} before), Cast to fp16 {count(dst, HALF)}, "
            f"to fp32 {count(dst, FLOAT)}; initializers fp16 {nbytes(dst, HALF)} bytes, fp32 {nbytes(dst, FLOAT)} bytes")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m cmtrain.fp16", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="a cm ONNX model (float32)")
    p.add_argument("output", help="where to write the fp16 variant")
    p.add_argument("--keep-fp32-ops", help="comma-separated op types kept in float32, replacing the default "
                                           f"({','.join(sorted(KEEP_FP32_OPS))}); '' keeps none")
    p.add_argument("--keep-fp32-nodes", default="", help="comma-separated node names also kept in float32")
    p.add_argument("--emulate", action="store_true", help="write the float32 emulation of the variant instead "
                                                          "(emulate_fp16: float16 rounding, float32 arithmetic)")
    a = p.parse_args(argv)
    keep_ops = KEEP_FP32_OPS if a.keep_fp32_ops is None else frozenset(s for s in a.keep_fp32_ops.split(",") if s)
    keep_nodes = frozenset(s for s in a.keep_fp32_nodes.split(",") if s)
    src = onnx.load(a.input)
    dst = (emulate_fp16 if a.emulate else to_fp16)(src, keep_ops, keep_nodes)
    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    onnx.save(dst, a.output)
    print(f"wrote {a.output} ({os.path.getsize(a.output)} bytes, {os.path.getsize(a.input)} before): "
          f"{summary(src, dst)}")


if __name__ == "__main__":
    sys.exit(main())
