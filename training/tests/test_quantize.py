"""cmtrain.quantize on the tiny test model: the QDQ structure, what stays float, and (with node) its outputs."""
import os
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from cmtrain import quantize as Q

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TINY = os.path.join(REPO, "fixtures", "tiny-random.onnx")
HAS_NODE = os.path.isdir(os.path.join(REPO, "node_modules", "onnxruntime-node")) and shutil.which("node")


def inputs(seed, n=7):
    rng = np.random.default_rng(seed)
    base = np.tanh(np.cumsum(np.cumsum(rng.standard_normal((n, 3, 32, 32)), axis=2), axis=3) / 20)
    sigma = np.resize(np.array(Q.CHECK_SIGMAS, dtype=np.float32), n)
    return (base + sigma[:, None, None, None] * rng.standard_normal(base.shape)).astype(np.float32), sigma


@pytest.fixture(scope="module")
def prepared():
    return Q.prepared(onnx.load(TINY))


def fake_ranges(model, convs):
    return {t: {"min": -3.0, "max": 3.0, "q0001": -2.5, "q9999": 2.5, "q001": -2.0, "q999": 2.0}
            for t in Q.activation_tensors(model, convs)}


def test_which_convs(prepared):
    convs = Q.quantizable_convs(prepared)
    names = [prepared.graph.node[k].name for k in convs]
    assert names and all("conv_in" not in n and "conv_out" not in n and "/attn/" not in n for n in names)
    assert len(names) == sum(n.op_type == "Conv" for n in prepared.graph.node) - 4  # conv_in, conv_out, qkv, proj


def test_qdq_structure(prepared):
    convs = Q.quantizable_convs(prepared)
    q = Q.to_int8(prepared, fake_ranges(prepared, convs), convs, "q9999")
    onnx.checker.check_model(q, full_check=True)
    producer = {o: n for n in q.graph.node for o in n.output}
    inits = {i.name: i for i in q.graph.initializer}
    quantized = [n for n in q.graph.node if n.op_type == "Conv" and producer.get(n.input[0]) is not None
                 and producer[n.input[0]].op_type == "DequantizeLinear"]
    assert len(quantized) == len(convs)
    for n in quantized:
        wdq = producer[n.input[1]]
        w = inits[wdq.input[0]]
        assert w.data_type == TensorProto.INT8
        assert numpy_helper.to_array(inits[wdq.input[1]]).shape == (w.dims[0],)  # one scale per output channel
        assert next(a.i for a in wdq.attribute if a.name == "axis") == 0
        if len(n.input) > 2:
            assert inits[producer[n.input[2]].input[0]].data_type == TensorProto.INT32
        # the activation: uint8 with a zero point
        assert inits[producer[n.input[0]].input[2]].data_type == TensorProto.UINT8
    # the noise path stays float: every Gemm reads float weights
    for n in q.graph.node:
        if n.op_type == "Gemm":
            assert inits[n.input[1]].data_type == TensorProto.FLOAT
    props = {p.key: p.value for p in q.metadata_props}
    assert props["cm.precision"] == "int8"
    assert props["cm.name"] == {p.key: p.value for p in prepared.metadata_props}["cm.name"]


def test_weights_round_trip(prepared):
    convs = Q.quantizable_convs(prepared)
    q = Q.to_int8(prepared, fake_ranges(prepared, convs), convs, "minmax")
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    src = {i.name: numpy_helper.to_array(i) for i in prepared.graph.initializer}
    for k in convs:
        wn = prepared.graph.node[k].input[1]
        w, wq, ws = src[wn], inits[f"{wn}__int8"], inits[f"{wn}__scale"]
        err = np.abs(wq.astype(np.float32) * ws[:, None, None, None] - w)
        assert (err <= ws[:, None, None, None] / 2 + 1e-7).all()


def test_uint8_params():
    s, zp = Q.uint8_params(-1.0, 3.0)
    assert abs(s - 4 / 255) < 1e-7 and zp == 64
    s, zp = Q.uint8_params(0.5, 2.0)   # a range that excludes 0 is widened to hold it
    assert zp == 0 and abs(s - 2 / 255) < 1e-7


@pytest.mark.skipif(not HAS_NODE, reason="needs node and onnxruntime-node")
def test_outputs_close_and_exact_at_sigma_min(prepared, tmp_path):
    convs = Q.quantizable_convs(prepared)
    x, s = inputs(0, 16)
    ranges = Q.calibrate(prepared, Q.activation_tensors(prepared, convs), x, s)
    path = str(tmp_path / "q.onnx")
    onnx.save(Q.to_int8(prepared, ranges, convs, "q9999"), path)
    cx, cs = inputs(1)
    d = Q.difference(Q.run_model(path, cx, cs), Q.run_model(TINY, cx, cs), cs)
    assert 0 < d["max"] <= 32 and d["mean"] <= 1.0
    # f(x, sigma_min) == x still holds bit for bit: the skip combination stays float.
    x0 = cx[:2].copy()
    out = Q.run_model(path, x0, np.full(2, 0.002, dtype=np.float32))
    assert np.array_equal(out, x0)


def test_a_narrow_full_resolution_level_keeps_its_decoder_in_float(tmp_path):
    from cmtrain.export import export_onnx, metadata, random_model
    from cmtrain.unet import PRESETS
    assert Q.keep_float_for({"type": "unet", **PRESETS["small"].to_json_dict()}) == Q.KEEP_FLOAT_CONVS
    thin = Q.keep_float_for({"type": "unet", **PRESETS["tiny-thin"].to_json_dict()})
    extra = set(thin) - set(Q.KEEP_FLOAT_CONVS)
    # In the exported graph they name the decoder's full-resolution convolutions: the upsampling into the level and
    # its blocks' (conv1, conv2, and the first block's skip), nothing else.
    model = random_model("tiny-thin", 0)
    path = str(tmp_path / "thin.onnx")
    export_onnx(model, path, metadata(model, "thin", "MIT", "synthetic", {"1": [0, 39]}))
    convs = [n.name for n in onnx.load(path).graph.node if n.op_type == "Conv"]
    kept = sorted(c for c in convs if any(k in c for k in extra))
    assert kept == ["/net/up.2.0/conv1/Conv", "/net/up.2.0/conv2/Conv", "/net/up.2.0/skip/Conv", "/net/upsample.1/Conv"]
