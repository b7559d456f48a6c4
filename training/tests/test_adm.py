"""The ADM UNet and the converter for OpenAI's consistency-model checkpoints (cmtrain.adm, cmtrain.convert).

Fixtures (made once from the reference code, see training/README.md "Converting OpenAI's checkpoints"):
  adm_<arch>_params.json        name -> shape of openai/consistency_models' UNetModel.state_dict()
  diffusers_<arch>_params.json  name -> shape produced by diffusers' convert_consistency_to_diffusers.py
The full-size export tests are slow (ImageNet-64 ~2 min and 6 GB RAM, LSUN-256 ~5 min and 10 GB):
  python3 -m pytest -q tests --runslow
"""
import json
import os
import shutil
import subprocess

import numpy as np
import onnx
import pytest
import torch

from cmtrain import adm
from cmtrain.adm import PRESETS, ADMConsistency, ADMUNet, random_adm, timestep_embedding
from cmtrain.convert import (KINDS, ConvertError, arch_of, build, diffusers_key_map, export_onnx, from_diffusers,
                             infer_kind, load_weights, main, metadata, read_safetensors)
from cmtrain.export import check_plans

torch.set_num_threads(1)
HERE = os.path.dirname(__file__)
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
RUNNER = os.path.join(HERE, "run_adm_onnx.mjs")
FIXTURES = os.path.join(HERE, "fixtures")
HAVE_ORT = os.path.isdir(os.path.join(REPO, "node_modules", "onnxruntime-node")) and shutil.which("node")
needs_ort = pytest.mark.skipif(not HAVE_ORT, reason="needs node and node_modules/onnxruntime-node (npm install)")
CONTRACT_KEYS = ["cm.format", "cm.resolution", "cm.channels", "cm.sigma_min", "cm.sigma_max", "cm.sigma_data", "cm.rho",
                 "cm.grid", "cm.plans", "cm.num_classes", "cm.name", "cm.license", "cm.trained_on"]


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


@pytest.mark.parametrize("arch", ["imagenet64", "lsun256"])
def test_state_dict_names_and_shapes_equal_openai(arch):
    """Exactly the names, shapes and order of openai/consistency_models' UNetModel with launch.sh's settings,
    so a released checkpoint loads with strict=True. Built for real (lsun256: 526M parameters, ~2 GB)."""
    net = ADMUNet(PRESETS[arch])
    ours = [(k, list(v.shape)) for k, v in net.state_dict().items()]
    assert ours == list(fixture(f"adm_{arch}_params.json").items())
    assert sum(p.numel() for p in net.parameters()) == {"imagenet64": 295_899_267, "lsun256": 526_304_771}[arch]
    assert arch_of(net.state_dict()) == arch


@pytest.mark.parametrize("arch", ["imagenet64", "lsun256"])
def test_diffusers_names_map_onto_ours(arch):
    """Every diffusers parameter (as their conversion script names it) is used once, with matching shapes."""
    theirs = fixture(f"diffusers_{arch}_params.json")
    ours = fixture(f"adm_{arch}_params.json")
    seen = []
    for our_name, their_name, kind in diffusers_key_map(PRESETS[arch]):
        if kind == "qkv":
            shapes = [theirs[n] for n in their_name]
            assert all(s == shapes[0] for s in shapes)
            want = [3 * shapes[0][0]] + shapes[0][1:] + ([1, 1] if len(shapes[0]) == 2 else [])
            seen += their_name
        else:
            want = theirs[their_name] + ([1, 1] if kind == "conv1x1" and len(theirs[their_name]) == 2 else [])
            seen.append(their_name)
        assert ours[our_name] == want, our_name
    assert sorted(seen) == sorted(theirs)


def to_diffusers(sd, cfg):
    """Our names -> diffusers' the way their conversion script does it: to_q, to_k, to_v are the first,
    second and last third of qkv's output channels, and the 1x1 convs become [C, C] matrices."""
    theirs = {}
    for our_name, their_name, kind in diffusers_key_map(cfg):
        t = sd[our_name]
        if kind == "qkv":
            for n, part in zip(their_name, t.chunk(3, dim=0)):
                theirs[n] = (part.reshape(part.shape[0], -1) if part.dim() == 4 else part).clone()
        else:
            theirs[their_name] = t.reshape(t.shape[0], -1) if kind == "conv1x1" and t.dim() == 4 else t
    return theirs


def test_diffusers_round_trip_keeps_the_qkv_layout():
    """diffusers' names back to ours give the same tensors; the older query/key/value names too."""
    model = random_adm("test", seed=2)
    sd = model.net.state_dict()
    theirs = to_diffusers(sd, PRESETS["test"])
    back = from_diffusers(theirs, PRESETS["test"])
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    old = {k.replace(".to_q.", ".query.").replace(".to_k.", ".key.").replace(".to_v.", ".value.")
           .replace(".to_out.0.", ".proj_attn."): v for k, v in theirs.items()}
    back = from_diffusers(old, PRESETS["test"])
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    with pytest.raises(ConvertError):
        from_diffusers({**theirs, "extra.weight": torch.zeros(1)}, PRESETS["test"])


def test_safetensors_reader(tmp_path):
    tensors = {"a": np.arange(6, dtype="<f4").reshape(2, 3), "b": np.array([1.5, -2.0], dtype="<f2"),
               "c": np.array([3.0, -0.5], dtype="<f4")}
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, arr in tensors.items():
        raw = arr.tobytes()
        dtype = {"<f4": "F32", "<f2": "F16"}[arr.dtype.str]
        if name == "c":                  # bfloat16: the high 16 bits of the float32
            raw, dtype = (arr.view("<u4") >> 16).astype("<u2").tobytes(), "BF16"
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    (tmp_path / "m.safetensors").write_bytes(len(h).to_bytes(8, "little") + h + b"".join(blobs))
    got = read_safetensors(str(tmp_path / "m.safetensors"))
    assert set(got) == {"a", "b", "c"}
    for name, arr in tensors.items():
        assert np.array_equal(got[name].float().numpy(), arr.astype(np.float32)), name


def test_timestep_embedding_is_cos_then_sin():
    t = torch.tensor([0.0, 250.0 * np.log(80.0)])
    e = timestep_embedding(t, 8)
    freqs = np.exp(-np.log(10000.0) * np.arange(4) / 4)
    want = np.concatenate([np.cos(t.numpy()[:, None] * freqs), np.sin(t.numpy()[:, None] * freqs)], axis=1)
    assert np.allclose(e.numpy(), want, atol=1e-4)


def test_attention_uses_the_three_heads_dim_layout():
    """q, k, v are the first, second and last third of qkv's channels (flash layout), heads consecutive inside."""
    torch.manual_seed(0)
    block = adm.AttentionBlock(64, 16).eval()
    x = torch.randn(2, 64, 4, 4)
    with torch.no_grad():
        got = block(x)
        qkv = block.qkv(block.norm(x)).reshape(2, 3 * 64, 16)
        q, k, v = (qkv[:, i * 64:(i + 1) * 64].reshape(2, 4, 16, 16) for i in range(3))   # [N, heads, d, T]
        w = torch.softmax(torch.einsum("nhdt,nhds->nhts", q, k) / 4.0, dim=-1)
        h = torch.einsum("nhts,nhds->nhdt", w, v).reshape(2, 64, 4, 4)
        want = x + block.proj_out(h)
    assert torch.allclose(got, want, atol=1e-5)


def test_consistency_function_boundary_and_classes():
    model = random_adm("test", seed=3)
    x = torch.randn(3, 3, 32, 32) * 2
    sigma = torch.tensor([adm.SIGMA_MIN, 1.0, 80.0])
    with torch.no_grad():
        y = model(x, sigma, torch.tensor([0, 1, 2]))
        y2 = model(x, sigma, torch.tensor([0, 5, 2]))
        assert model(torch.randn(1, 3, 16, 48), torch.tensor([5.0]), torch.tensor([1])).shape == (1, 3, 16, 48)
    assert torch.equal(y[0], x[0])                    # f(x, sigma_min) == x exactly
    assert (y[1] - x[1]).abs().max() > 1e-2
    assert (y2[1] - y[1]).abs().max() > 1e-3 and torch.equal(y2[2], y[2])   # the label acts, per sample
    with pytest.raises(ValueError):
        model(x, sigma)                               # a class-conditional model needs labels


def test_kinds_and_their_plans():
    assert infer_kind("/dl/cd_imagenet64_lpips.pt") == "cd_imagenet64_lpips"
    assert infer_kind("cd_imagenet64_l2.pt") == "cd_imagenet64_l2"
    assert infer_kind("/x/ct_bedroom256.pt") == "ct_bedroom256"
    assert infer_kind("/hf/models--openai--diffusers-cd_bedroom256_l2/snapshots/ab12/unet") == "cd_bedroom256_l2"
    assert infer_kind("/x/ct_cat256.pt") == "ct_cat256"
    assert infer_kind("/x/model.pt") is None
    assert infer_kind("/x/cd_bedroom256.pt") is None             # l2 or lpips? ask (--checkpoint-kind)
    assert infer_kind("/dl/ct_bedroom256/cd_cat256_l2.pt") == "cd_cat256_l2"   # the file name wins
    with pytest.raises(ConvertError):
        infer_kind("edm_imagenet64_ema.pt")
    want2 = {"cd_imagenet64_l2": [0, 22, 39], "ct_imagenet64": [0, 106, 200], "ct_bedroom256": [0, 67, 150],
             "ct_cat256": [0, 62, 150], "cd_bedroom256_lpips": [0, 17, 39], "cd_bedroom256_l2": [0, 18, 39]}
    for kind, spec in KINDS.items():
        check_plans(spec["plans"], spec["grid"])
        assert spec["plans"]["1"] == [0, spec["grid"] - 1]
        if kind in want2:
            assert spec["plans"]["2"] == want2[kind]


def test_checkpoint_round_trip_through_the_cli(tmp_path):
    """A state_dict saved like the released files converts; a wrong architecture is refused clearly."""
    model = random_adm("test", seed=4)
    ckpt = tmp_path / "cd_imagenet64_l2.pt"
    torch.save(model.net.state_dict(), ckpt)
    with pytest.raises(ConvertError):
        build({k: v for k, v in model.net.state_dict().items() if k != "out.2.bias"}, "test")
    # the test preset is no released architecture: the CLI refuses it as a checkpoint
    assert main([str(ckpt), "-o", str(tmp_path / "m.onnx")]) == 2
    assert main([str(tmp_path / "nothing.pt"), "--random", "-o", str(tmp_path / "m.onnx")]) == 2


def run_node(path, x, sigma, labels, tmp_path, threads=1, timeout=600):
    x, sigma = np.ascontiguousarray(x, "<f4"), np.ascontiguousarray(sigma, "<f4")
    x.tofile(tmp_path / "x.bin")
    sigma.tofile(tmp_path / "s.bin")
    lab = "-"
    if labels is not None:
        np.ascontiguousarray(labels, "<i8").tofile(tmp_path / "y.bin")
        lab = str(tmp_path / "y.bin")
    subprocess.run(["node", RUNNER, path, ",".join(map(str, x.shape)), str(tmp_path / "x.bin"), str(tmp_path / "s.bin"),
                    str(tmp_path / "o.bin"), lab, str(threads)], check=True, timeout=timeout)
    return np.fromfile(tmp_path / "o.bin", "<f4").reshape(x.shape)


def check_export(model, path, tmp_path, cases, tol):
    proto = onnx.load(path, load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    for key in CONTRACT_KEYS + ["cm.params", "cm.architecture"]:
        assert key in meta, key
    assert meta["cm.num_classes"] == str(model.cfg.num_classes)
    assert meta["cm.resolution"] == str(model.cfg.image_size)
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    inputs = {i.name: i for i in proto.graph.input}
    assert list(inputs)[:2] == ["x", "sigma"] and dims(inputs["x"]) == ["N", 3, "H", "W"]
    assert [o.name for o in proto.graph.output] == ["denoised"] and dims(proto.graph.output[0]) == ["N", 3, "H", "W"]
    if model.cfg.num_classes:
        assert inputs["class_labels"].type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert dims(inputs["class_labels"]) == ["N"]
    else:
        assert "class_labels" not in inputs
    g = torch.Generator().manual_seed(0)
    for shape, sigmas in cases:
        sigma = torch.tensor(sigmas)
        x = torch.randn(shape, generator=g) * sigma[:, None, None, None].clamp(min=1)
        labels = torch.randint(0, model.cfg.num_classes, (shape[0],), generator=g) if model.cfg.num_classes else None
        with torch.no_grad():
            want = model(x, sigma, labels).numpy()
        got = run_node(path, x.numpy(), sigma.numpy(), None if labels is None else labels.numpy(), tmp_path)
        assert np.abs(got - want).max() < tol, np.abs(got - want).max()
        for i, s in enumerate(sigmas):
            if s == 0.002:
                assert np.array_equal(got[i], x[i].numpy())      # f(x, sigma_min) == x in the graph too
    return meta


@needs_ort
def test_small_export_matches_pytorch(tmp_path):
    """The whole export path (class labels, dynamic N/H/W, metadata) on the small test preset."""
    model = random_adm("test", seed=5)
    path = str(tmp_path / "t.onnx")
    export_onnx(model, path, metadata(model, "t", "MIT", "nothing", 40, {"1": [0, 39]}, "test"))
    check_export(model, path, tmp_path, [((2, 3, 32, 32), [80.0, 0.002]), ((3, 3, 16, 48), [0.002, 3.0, 0.5])], 1e-4)


@needs_ort
def test_external_data_export_runs(tmp_path):
    """--external-data always (what LSUN-256 gets automatically): one .data file beside the .onnx."""
    model = random_adm("test", seed=6)
    path = str(tmp_path / "ext.onnx")
    files = export_onnx(model, path, metadata(model, "t", "MIT", "nothing", 40, {"1": [0, 39]}, "test"), "always")
    assert files == [path, path + ".data"] and sorted(os.listdir(tmp_path)) == ["ext.onnx", "ext.onnx.data"]
    assert os.path.getsize(path) < os.path.getsize(path + ".data") / 10     # the graph and tensors < 1 kB
    proto = onnx.load(path, load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    check_export(model, path, tmp_path, [((1, 3, 32, 32), [0.002])], 1e-4)


@pytest.mark.slow
@needs_ort
def test_imagenet64_export_matches_pytorch(tmp_path):
    """The real ImageNet-64 architecture (296M random parameters, 1.2 GB ONNX, inline weights): a state_dict
    saved like the released cd_imagenet64_l2.pt goes through the CLI, and the same weights in a diffusers
    unet/ folder load identically; about 2 minutes (the export alone takes ~50 s)."""
    model = random_adm("imagenet64", seed=1)
    sd = model.net.state_dict()
    ckpt, path = tmp_path / "cd_imagenet64_l2.pt", str(tmp_path / "in64.onnx")
    torch.save(sd, ckpt)
    folder = tmp_path / "models--openai--diffusers-ct_imagenet64" / "unet"
    folder.mkdir(parents=True)
    torch.save(to_diffusers(sd, PRESETS["imagenet64"]), folder / "diffusion_pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps({"sample_size": 64, "num_class_embeds": 1000}))
    assert infer_kind(str(folder.parent)) == "ct_imagenet64"
    loaded = load_weights(str(folder.parent))
    assert loaded.keys() == sd.keys() and all(torch.equal(loaded[k], sd[k]) for k in sd)
    del loaded
    assert main([str(ckpt), "-o", path]) == 0
    meta = check_export(model, path, tmp_path, [((2, 3, 64, 64), [80.0, 0.002])], 1e-3)
    assert meta["cm.num_classes"] == "1000" and meta["cm.grid"] == "40" and meta["cm.name"] == "openai-cd_imagenet64_l2"
    assert json.loads(meta["cm.plans"]) == {"1": [0, 39], "2": [0, 22, 39]}
    proto = onnx.load(path, load_external_data=False)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)


@pytest.mark.slow
@needs_ort
def test_lsun256_export_matches_pytorch(tmp_path):
    """LSUN-256 (526M random parameters): external data, unconditional, 256x256; several minutes."""
    path = str(tmp_path / "lsun.onnx")
    assert main(["--random", "--arch", "lsun256", "--seed", "1", "--checkpoint-kind", "ct_bedroom256", "-o", path]) == 0
    assert os.path.exists(path + ".data") and os.path.getsize(path) < 5_000_000
    model = random_adm("lsun256", seed=1)
    meta = check_export(model, path, tmp_path, [((1, 3, 256, 256), [2.0])], 1e-3)
    assert meta["cm.num_classes"] == "0" and meta["cm.grid"] == "151"
    assert json.loads(meta["cm.plans"]) == {"1": [0, 150], "2": [0, 67, 150]}
