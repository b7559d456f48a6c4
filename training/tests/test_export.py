import base64
import json
import os
import shutil
import subprocess

import numpy as np
import onnx
import pytest
import torch

from cmtrain.export import (DEFAULT_PLANS, check_plans, check_task_plans, export_onnx, load_onnx_weights, metadata,
                             random_model)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUNNER = os.path.join(os.path.dirname(__file__), "run_onnx.mjs")
CONTRACT_KEYS = ["cm.format", "cm.resolution", "cm.channels", "cm.sigma_min", "cm.sigma_max", "cm.sigma_data", "cm.rho",
                 "cm.grid", "cm.plans", "cm.num_classes", "cm.name", "cm.license", "cm.trained_on"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = random_model("tiny", seed=7)
    path = str(tmp_path_factory.mktemp("onnx") / "m.onnx")
    export_onnx(model, path, metadata(model, "t", "MIT", "nothing", DEFAULT_PLANS))
    return model, path


def test_metadata_and_signature(exported):
    model, path = exported
    proto = onnx.load(path)
    meta = {p.key: p.value for p in proto.metadata_props}
    for key in CONTRACT_KEYS + ["cm.params", "cm.architecture"]:
        assert key in meta, key
    assert meta["cm.format"] == "1" and meta["cm.grid"] == "40" and meta["cm.sigma_min"] == "0.002"
    assert json.loads(meta["cm.plans"]) == DEFAULT_PLANS
    assert int(meta["cm.params"]) == sum(p.numel() for p in model.parameters())
    assert json.loads(meta["cm.architecture"])["channels"] == 16

    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    (x, sigma), (out,) = proto.graph.input, proto.graph.output
    assert (x.name, sigma.name, out.name) == ("x", "sigma", "denoised")
    assert x.type.tensor_type.elem_type == sigma.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims(x) == ["N", 3, "H", "W"] and dims(sigma) == ["N"] and dims(out) == ["N", 3, "H", "W"]
    assert proto.opset_import[0].version == 17
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)


def test_plans_are_checked():
    check_plans({"1": [0, 39], "3": [0, 12, 22, 39]}, 40)
    for bad in ({"2": [0, 39]}, {"1": [0, 38]}, {"2": [0, 22, 22, 39]}, {"2": [22, 0, 39]}):
        with pytest.raises(ValueError):
            check_plans(bad, 40)


def test_fixture_matches_code():
    """fixtures/tiny-random.ref.json is what today's code computes (regenerate it if this fails)."""
    ref = json.load(open(os.path.join(REPO, "fixtures", "tiny-random.ref.json")))
    x = torch.from_numpy(np.frombuffer(base64.b64decode(ref["x"]), "<f4").reshape(ref["shape"]).copy())
    y = np.frombuffer(base64.b64decode(ref["denoised"]), "<f4").reshape(ref["shape"])
    with torch.no_grad():
        ours = random_model("tiny", seed=0)(x, torch.tensor(ref["sigma"])).numpy()
    assert np.abs(ours - y).max() < 1e-5


def run_node(path, x, sigma, tmp_path):
    x, sigma = np.ascontiguousarray(x, "<f4"), np.ascontiguousarray(sigma, "<f4")
    x.tofile(tmp_path / "x.bin")
    sigma.tofile(tmp_path / "s.bin")
    subprocess.run(["node", RUNNER, path, ",".join(map(str, x.shape)), str(tmp_path / "x.bin"),
                    str(tmp_path / "s.bin"), str(tmp_path / "o.bin")], check=True, timeout=60)
    return np.fromfile(tmp_path / "o.bin", "<f4").reshape(x.shape)


@pytest.mark.skipif(not os.path.isdir(os.path.join(REPO, "node_modules", "onnxruntime-node")) or not shutil.which("node"),
                    reason="needs node and node_modules/onnxruntime-node (npm install at the repository root)")
def test_onnx_graph_equals_pytorch(exported, tmp_path):
    model, path = exported
    g = torch.Generator().manual_seed(0)
    for shape, sigmas in [((2, 3, 64, 64), [80.0, 0.5]), ((3, 3, 32, 96), [0.002, 3.0, 0.002])]:
        sigma = torch.tensor(sigmas)
        x = torch.randn(shape, generator=g) * sigma[:, None, None, None].clamp(min=1)
        with torch.no_grad():
            want = model(x, sigma).numpy()
        got = run_node(path, x.numpy(), sigma.numpy(), tmp_path)
        assert np.abs(got - want).max() < 1e-4
        for i, s in enumerate(sigmas):
            if s == 0.002:
                assert np.array_equal(got[i], x[i].numpy())     # f(x, sigma_min) == x in the graph too


def test_weights_come_back_from_the_onnx_file(exported):
    """load_onnx_weights recovers every parameter (GroupNorm's renamed ones too) bit for bit."""
    model, path = exported
    back = load_onnx_weights(path)
    want, got = model.state_dict(), back.state_dict()
    assert set(want) == set(got)
    for k in want:
        assert torch.equal(want[k], got[k]), k


def test_task_plans_metadata(tmp_path):
    model = random_model("tiny", seed=1)
    plans = {"superres-x4": {"4": {"ts": [26, 28, 31, 33, 39], "start": "estimate", "eta": 0}},
             "denoise": {"1": {"eta": 0}}}
    meta = metadata(model, "t", "MIT", "nothing", DEFAULT_PLANS, plans)
    assert json.loads(meta["cm.task_plans"]) == plans
    check_task_plans({"inpaint": {"1": {"ts": [0, 39]}, "refine": [37, 39]}})
    for bad in ({"paint": {"1": {"ts": [0, 39]}}}, {"inpaint": {"2": {"ts": [0, 39]}}},
                {"denoise": {"1": {"ts": [0, 39]}}}, {"inpaint": {"1": {"ts": [0, 39], "eta": 2}}},
                {"inpaint": {"1": {"ts": [0, 39]}, "refine": [37]}}, {"inpaint": {"1": {"ts": [0, 39]}, "refine": [37, 38]}}):
        with pytest.raises(ValueError):
            check_task_plans(bad)


def _activation_mul_add(path):
    """Mul and Add nodes on the image's path (those that depend on the input x): full-size work per call."""
    g = onnx.load(path).graph
    on_path, count = {"x"}, 0
    for n in g.node:          # exported graphs are topologically sorted
        if any(i in on_path for i in n.input):
            on_path.update(n.output)
            count += n.op_type in ("Mul", "Add")
    return count


def test_norm2_folded_into_the_noise_scale_and_shift(exported, tmp_path, monkeypatch):
    """ResBlock folds norm2's weight and bias into the noise level's scale and shift (on [N, C, 1, 1] tensors), and
    the exporter drops the multiply by ones and add of zeros torch writes after a weightless group norm: two fewer
    full-size nodes per block, the same function (within float rounding), and a file of the old layout still loads."""
    from cmtrain.unet import ResBlock
    model, path = exported
    blocks = sum(isinstance(m, ResBlock) for m in model.modules())
    legacy = str(tmp_path / "legacy.onnx")
    monkeypatch.setattr(ResBlock, "fold_norm", False)
    export_onnx(model, legacy, metadata(model, "t", "MIT", "nothing", DEFAULT_PLANS))
    x, sigma = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.tensor([0.05, 1.0, 20.0])
    with torch.no_grad():
        old = model(x, sigma)
    monkeypatch.setattr(ResBlock, "fold_norm", True)
    with torch.no_grad():
        new = model(x, sigma)
    assert (old - new).abs().max() < 1e-5
    assert _activation_mul_add(legacy) - _activation_mul_add(path) == 2 * blocks
    back = load_onnx_weights(legacy)
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    assert all(m.fold_norm for m in back.modules() if isinstance(m, ResBlock))
