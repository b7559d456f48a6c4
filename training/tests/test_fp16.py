"""cmtrain.fp16 on the tiny test model: the variant's contract, its precisions, and (with node) its outputs."""
import os
import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper, shape_inference

from cmtrain.fp16 import emulate_fp16, main, to_fp16

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TINY = os.path.join(REPO, "fixtures", "tiny-random.onnx")
RUNNER = os.path.join(os.path.dirname(__file__), "run_onnx.mjs")
FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
HAS_NODE = os.path.isdir(os.path.join(REPO, "node_modules", "onnxruntime-node")) and shutil.which("node")


@pytest.fixture(scope="module")
def source():
    return onnx.load(TINY)


@pytest.fixture(scope="module")
def variant(source):
    return to_fp16(source)


def io(model):
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    return [(v.name, v.type.tensor_type.elem_type, dims(v)) for v in list(model.graph.input) + list(model.graph.output)]


def elem_types(model):
    g = shape_inference.infer_shapes(model, strict_mode=True).graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.input) + list(g.output) + list(g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


def sigma_only_nodes(model):
    """The nodes whose every input is computed from `sigma` alone (or is a constant), reading sigma at least
    indirectly: found here independently of the converter, by propagating dependencies through the graph."""
    g = model.graph
    deps = {i.name: {i.name} for i in g.input}
    deps.update({t.name: set() for t in g.initializer})
    out = []
    for node in g.node:
        d = set().union(*[deps[i] for i in node.input if i])
        for o in node.output:
            deps[o] = d
        if d == {"sigma"}:
            out.append(node)
    return out


def test_checker_and_signature(source, variant):
    onnx.checker.check_model(variant, full_check=True)
    assert io(variant) == io(source)
    assert io(variant) == [("x", FLOAT, ["N", 3, "H", "W"]), ("sigma", FLOAT, ["N"]),
                           ("denoised", FLOAT, ["N", 3, "H", "W"])]


def test_weights_are_half_and_file_is_about_half(source, variant, tmp_path):
    nbytes = lambda m, dt: sum(numpy_helper.to_array(t).nbytes for t in m.graph.initializer if t.data_type == dt)
    assert nbytes(variant, HALF) > 0.65 * (nbytes(variant, HALF) + nbytes(variant, FLOAT))
    # Every trunk convolution reads float16 weights.
    half = {t.name for t in variant.graph.initializer if t.data_type == HALF}
    convs = [n for n in variant.graph.node if n.op_type == "Conv"]
    assert len(convs) == 28 and all(n.input[1] in half and n.input[2] in half for n in convs)
    # The float16 weights hold the float32 ones, rounded.
    src = {t.name: numpy_helper.to_array(t) for t in source.graph.initializer}
    for t in variant.graph.initializer:
        if t.data_type == HALF and t.name.endswith("__fp16") and t.name[:-6] in src:
            want = src[t.name[:-6]].astype(np.float16)
            assert np.array_equal(numpy_helper.to_array(t), want), t.name
    path = tmp_path / "v.onnx"
    onnx.save(variant, str(path))
    ratio = os.path.getsize(path) / os.path.getsize(TINY)
    assert 0.45 < ratio < 0.7, ratio


def test_metadata_kept_and_precision_added(source, variant):
    src = [(p.key, p.value) for p in source.metadata_props]
    got = [(p.key, p.value) for p in variant.metadata_props]
    assert got == src + [("cm.precision", "fp16")]
    # Converting a file that already says cm.precision replaces the entry instead of adding a second one.
    again = onnx.ModelProto()
    again.CopyFrom(source)
    entry = again.metadata_props.add()
    entry.key, entry.value = "cm.precision", "fp32"
    keys = [p.key for p in to_fp16(again).metadata_props]
    assert keys.count("cm.precision") == 1 and dict((p.key, p.value) for p in to_fp16(again).metadata_props)[
        "cm.precision"] == "fp16"


def test_pure(source):
    before = source.SerializeToString()
    to_fp16(source)
    emulate_fp16(source)
    assert source.SerializeToString() == before


def test_sigma_only_nodes_stay_float32(variant):
    types = elem_types(variant)
    nodes = sigma_only_nodes(variant)
    ops = {n.op_type for n in nodes}
    # c_skip/c_out/c_in, c_noise, the sinusoidal embedding, its MLP and the ResBlocks' projections.
    assert {"Log", "Sin", "Cos", "Gemm", "Sqrt", "Reciprocal", "Sigmoid"} <= ops, ops
    assert len([n for n in nodes if n.op_type == "Gemm"]) == 10
    # (The Casts to float16 that hand their results to the trunk are the boundary, not part of them.)
    casts_down = [n for n in nodes if n.op_type == "Cast" and n.attribute[0].i == HALF]
    assert casts_down and all(n.name.endswith("__cast") for n in casts_down)
    floats = [o for n in nodes if n not in casts_down for o in n.output if types[o] in (FLOAT, HALF)]
    assert floats and all(types[o] == FLOAT for o in floats), [o for o in floats if types[o] != FLOAT]
    # Their weights too.
    inits = {t.name: t.data_type for t in variant.graph.initializer}
    read = [i for n in nodes for i in n.input if i in inits and types[i] in (FLOAT, HALF)]
    assert read and all(inits[i] == FLOAT for i in read)


def test_trunk_half_norms_float32_skip_path_exact(variant):
    types = elem_types(variant)
    g = variant.graph
    producer = {o: n for n in g.node for o in n.output}
    for n in g.node:
        if n.op_type in ("Conv", "Einsum", "Resize"):
            assert types[n.output[0]] == HALF, n.name
        if n.op_type in ("InstanceNormalization", "Softmax"):
            assert types[n.output[0]] == FLOAT, n.name
            assert producer[n.input[0]].op_type == "Cast", n.name   # cast up from the float16 trunk
        if n.op_type == "Cast" and n.name.endswith("__cast"):     # no inserted cast to the type a tensor already has
            assert types[n.input[0]] != types[n.output[0]], n.name
    # denoised = c_skip * x + c_out * F, in float32, with x read as it came in (no round trip through float16).
    final = producer["denoised"]
    assert final.op_type == "Add" and all(types[i] == FLOAT for i in final.input)
    skip = [producer[i] for i in final.input if "x" in producer[i].input]
    assert len(skip) == 1 and skip[0].op_type == "Mul"
    other = [producer[i] for i in final.input if producer[i] is not skip[0]][0]
    assert other.op_type == "Mul" and types[other.output[0]] == FLOAT
    assert any(producer[i].op_type == "Cast" and types[producer[i].input[0]] == HALF for i in other.input)
    # x itself is never rounded: c_skip * x and c_in * x are float32 products, c_in * x is cast for the trunk.
    readers = [n for n in g.node if "x" in n.input]
    assert len(readers) == 2 and all(n.op_type == "Mul" and types[n.output[0]] == FLOAT for n in readers)


def test_keep_ops_option(source):
    kept_none = to_fp16(source, keep_ops=frozenset())
    types = elem_types(kept_none)
    norms = [n for n in kept_none.graph.node if n.op_type == "InstanceNormalization"]
    assert len(norms) == 18 and all(types[n.output[0]] == HALF for n in norms)
    with_einsum = to_fp16(source, keep_ops=frozenset({"Einsum"}))
    types = elem_types(with_einsum)
    assert all(types[n.output[0]] == FLOAT for n in with_einsum.graph.node if n.op_type == "Einsum")


def test_cli(tmp_path, capsys):
    out = tmp_path / "sub" / "tiny-fp16.onnx"
    main([TINY, str(out)])
    assert "wrote" in capsys.readouterr().out
    m = onnx.load(str(out))
    onnx.checker.check_model(m)
    assert {p.key: p.value for p in m.metadata_props}["cm.precision"] == "fp16"
    emu = tmp_path / "emu.onnx"
    main([TINY, str(emu), "--emulate"])
    e = onnx.load(str(emu))
    assert all(t.data_type != HALF for t in e.graph.initializer)
    assert {p.key: p.value for p in e.metadata_props}["cm.precision"] == "fp16-emulated"


def run_node(path, x, sigma, tmp_path):
    x.astype("<f4").tofile(tmp_path / "x.bin")
    sigma.astype("<f4").tofile(tmp_path / "s.bin")
    subprocess.run(["node", RUNNER, str(path), ",".join(map(str, x.shape)), str(tmp_path / "x.bin"),
                    str(tmp_path / "s.bin"), str(tmp_path / "y.bin")], check=True, cwd=REPO, timeout=120)
    return np.fromfile(tmp_path / "y.bin", dtype="<f4").reshape(x.shape)


@pytest.mark.skipif(not HAS_NODE, reason="needs node and onnxruntime-node")
def test_outputs_close_and_skip_path_exact(variant, tmp_path):
    path = tmp_path / "v.onnx"
    onnx.save(variant, str(path))
    rng = np.random.default_rng(0)
    sigma = np.array([0.002, 0.5, 10.0, 80.0], dtype=np.float32)
    x = (rng.uniform(-1, 1, (4, 3, 32, 32)) + sigma[:, None, None, None] * rng.standard_normal((4, 3, 32, 32)))
    x = x.astype(np.float32)
    ref = run_node(TINY, x, sigma, tmp_path)
    got = run_node(path, x, sigma, tmp_path)
    assert np.isfinite(got).all()
    diff = np.abs(got - ref)
    assert diff.max() * 127.5 < 2.0 and diff.max() > 0, diff.max()   # a few grey levels at most, and not the same file
    # At sigma_min, c_skip = 1 and c_out = 0 exactly: f(x) == x bit for bit, as in float32.
    assert np.array_equal(got[0], x[0])
