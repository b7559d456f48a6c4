"""The space-to-depth UNet (unshuffle 2) and cmtrain.student: a faster student that starts from a trained teacher."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from cmtrain import continuous
from cmtrain.consistency import ConsistencyModel
from cmtrain.export import export_onnx, load_onnx_weights, metadata, random_model, read_metadata
from cmtrain.student import check_pair, make_student, teacher_name
from cmtrain.unet import PRESETS, UNetConfig
from test_export import REPO, run_node
from test_promote import _photos


# The ends that a small-s2d student makes new (shapes unlike the teacher's).
NEW = ("net.conv_in.", "net.norm_out.", "net.conv_out.")


def _export(model, path, name="probe"):
    export_onnx(model, str(path), metadata(model, name, "MIT", "synthetic", {"1": [0, 39]}))
    return path


def test_unshuffle_runs_on_sub_images_and_keeps_the_contract():
    """Same input and output shapes as the plain UNet, any multiple of 8, while every convolution runs at half the
    resolution: the first one sees the 12 channels of the 2x2 sub-images (input pixel (2i+a, 2j+b) of channel c is
    sub-image channel 4c+2a+b at (i, j)), the last one gives 12."""
    model = random_model("tiny-s2d", 0)
    seen = []
    model.net.conv_in.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    x = torch.randn(2, 3, 24, 40)
    sigma = torch.tensor([0.5, 3.0])
    with torch.no_grad():
        y = model(x, sigma)
    assert y.shape == x.shape
    x_in = seen[0]
    assert x_in.shape == (2, 12, 12, 20)
    c_in = (1 / (sigma ** 2 + 0.5 ** 2).sqrt())[:, None, None, None]     # EDM's input scaling, sigma_data 0.5
    assert torch.allclose(x_in[:, 4 * 1 + 2 * 1 + 0, 3, 5], x[:, 1, 7, 10] * c_in[:, 0, 0, 0], atol=1e-6)
    assert torch.allclose(x_in[:, 4 * 2 + 0 + 1, 0, 19], x[:, 2, 0, 39] * c_in[:, 0, 0, 0], atol=1e-6)
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[-1])) for m in convs]
    with torch.no_grad():
        model(x, sigma)
    for h in hooks:
        h.remove()
    assert max(sizes) == 20      # nothing runs at the input's width of 40


def test_plain_unet_metadata_unchanged():
    """Files of the plain UNet do not name the new field (older readers and the shipped metadata stay as they were)."""
    assert "unshuffle" not in PRESETS["small"].to_json_dict()
    assert PRESETS["small-s2d"].to_json_dict()["unshuffle"] == 2


@pytest.mark.skipif(not os.path.isdir(os.path.join(REPO, "node_modules", "onnxruntime-node")) or not shutil.which("node"),
                    reason="needs node and node_modules/onnxruntime-node (npm install at the repository root)")
def test_student_onnx_equals_pytorch_and_weights_come_back(tmp_path):
    model = random_model("tiny-s2d", 3)
    path = _export(model, tmp_path / "s2d.onnx")
    assert json.loads(read_metadata(str(path))["cm.architecture"])["unshuffle"] == 2
    sigma = torch.tensor([0.05, 2.0])
    x = torch.randn(2, 3, 32, 48) * sigma[:, None, None, None].clamp(min=1)
    with torch.no_grad():
        want = model(x, sigma).numpy()
    assert np.abs(run_node(str(path), x.numpy(), sigma.numpy(), tmp_path) - want).max() < 1e-4
    back = load_onnx_weights(str(path)).state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, back[k]), k


def test_student_starts_with_the_teachers_weights():
    teacher = random_model("tiny", 1)
    student = make_student(teacher, PRESETS["tiny-s2d"], seed=0)
    t, s = teacher.state_dict(), student.state_dict()
    shared = [k for k in s if not k.startswith(NEW)]
    assert len(shared) > 0.9 * len(s)
    for k in shared:
        assert torch.equal(s[k], t[teacher_name(k)]), k
    # Level 0 of the student is level 1 of the teacher; the decoder keeps its indices (coarse to fine).
    assert teacher_name("net.down.0.0.conv1.weight") == "net.down.1.0.conv1.weight"
    assert teacher_name("net.downsample.0.weight") == "net.downsample.1.weight"
    assert teacher_name("net.up.1.0.conv2.bias") == "net.up.1.0.conv2.bias"
    # The teacher's full-resolution level is what the student does not have.
    used = {teacher_name(k) for k in shared}
    assert all(k.startswith(("net.down.0.", "net.downsample.0.", "net.conv_in.", "net.norm_out.", "net.conv_out.",
                             f"net.up.{len(teacher.net.up) - 1}.", f"net.upsample.{len(teacher.net.upsample) - 1}."))
               for k in set(t) - used)
    # The output convolution is not zero, so that the first step's gradients reach the shared weights.
    assert student.net.conv_out.weight.abs().sum() > 0


def test_thin_student_keeps_every_level_with_a_narrow_first_one(tmp_path):
    teacher = random_model("tiny", 2)
    student = make_student(teacher, PRESETS["tiny-thin"], seed=0)
    net = student.net
    assert net.conv_in.out_channels == 8 and net.conv_out.in_channels == 8
    assert net.upsample[-1].out_channels == 8           # narrow_up: no 32-channel tensor at full resolution
    t, s = teacher.state_dict(), student.state_dict()
    copied = [k for k in s if k in t and t[k].shape == s[k].shape and torch.equal(s[k], t[k])]
    # The lower levels, the middle and the noise embedding are the teacher's, at the same names.
    for k in ("net.down.1.0.conv2.weight", "net.down.2.0.conv1.weight", "net.mid1.conv1.weight", "net.attn.qkv.weight",
              "net.up.0.0.conv1.weight", "net.upsample.0.weight", "net.emb_mlp.0.weight"):
        assert k in copied, k
    # The full-resolution level is new (its shapes differ), and so is what feeds level 1 from it.
    assert not any(k.startswith(("net.down.0.", "net.up.2.", "net.conv_in.")) for k in copied)
    assert "net.down.1.0.conv1.weight" not in copied
    # Plain UNet metadata is unchanged; the thin one says narrow_up, and comes back from its ONNX file.
    assert "narrow_up" not in PRESETS["small"].to_json_dict()
    assert all(p.any() for p in student.parameters())       # no all-zero tensor: the file keeps one per parameter
    path = _export(student, tmp_path / "thin.onnx")
    assert json.loads(read_metadata(str(path))["cm.architecture"])["narrow_up"] is True
    back = load_onnx_weights(str(path)).state_dict()
    for k, v in s.items():
        assert torch.equal(v, back[k]), k


def test_student_must_be_the_teacher_without_its_first_level():
    with pytest.raises(ValueError, match="without its full-resolution level"):
        check_pair(PRESETS["tiny"], PRESETS["small-s2d"])
    with pytest.raises(ValueError):
        check_pair(PRESETS["tiny"], UNetConfig(channels=16, mults=(2, 2), blocks=1, attention=True, unshuffle=1))
    with pytest.raises(ValueError):     # not narrower
        check_pair(PRESETS["tiny"], UNetConfig(channels=16, mults=(1, 2, 2), blocks=1, attention=True, narrow_up=True))
    check_pair(PRESETS["small"], PRESETS["small-s2d"])
    check_pair(PRESETS["small"], PRESETS["small-thin"])


def test_continuous_student_run_distils_from_the_shipped_model(tmp_path):
    data = _photos(tmp_path / "photos", n=8)
    shipped = _export(random_model("tiny", 1), tmp_path / "default.onnx")
    run = tmp_path / "runs" / "student"
    args = ["--run", str(run), "--model", str(shipped), "--student", "tiny-s2d", "--threads", "1", "--foreground", "--",
            "--data", str(data), "--crop", "32", "--batch", "4", "--val-percent", "50", "--val-crop", "64",
            "--val-crops", "2", "--ckpt-minutes", "100", "--max-steps", "2"]
    assert continuous.main(args) == 0
    ckpt = torch.load(run / "last.pt")
    assert ckpt["step"] == 2 and ckpt["config"]["unshuffle"] == 2
    assert ckpt["args"]["anchor_onnx"] == str(run / "base.onnx") and ckpt["args"]["anchor_above"] == 0.002
    assert (run / "base.onnx").read_bytes() == shipped.read_bytes()
    assert json.loads(read_metadata(str(run / "base-student.onnx"))["cm.architecture"])["unshuffle"] == 2
    # The same command resumes it.
    assert continuous.plan(str(run), str(shipped), "tiny-s2d")[0][-1] == "--resume"
