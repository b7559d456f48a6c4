"""A faster student from a trained model: the `small-s2d` UNet starts from a `small` model's lower levels.

  python3 -m cmtrain.student --from ../models/default.onnx --out runs/student/base-student.onnx

`small-s2d` (unet.PRESETS) is `small` without its full-resolution level: the image's 2x2 sub-images (pixel unshuffle,
12 channels at half resolution) go through a new 3x3 convolution into what was `small`'s level 1, and the output comes
back through a new GroupNorm, SiLU, 3x3 convolution to 12 channels and a pixel shuffle. Every other weight (the noise
embedding, levels 1-3 down and up, the middle with its attention, two of the three upsampling convolutions) has the
same shape in both, so the student starts with the teacher's trained weights there; distillation from the teacher
(cmtrain.train with the teacher as the anchor at every noise level) then teaches the new ends. One evaluation costs
0.36x of `small`'s in int8; an hour of distillation did not make it good enough to ship (its superres x2 stayed
3.2 dB under the teacher's: bench/results/student.md).
"""
import argparse
import json
import re

import torch

from .consistency import ConsistencyModel
from .unet import PRESETS, UNetConfig

# Parameters that the student makes new (everything else is the teacher's, renamed by student_name).
NEW = ("net.conv_in.", "net.norm_out.", "net.conv_out.")


def check_pair(teacher: UNetConfig, student: UNetConfig) -> None:
    """The student must be the teacher without its first level, on sub-images of the factor that level's resolution
    step had."""
    want = (teacher.channels, teacher.mults[1:], teacher.blocks, teacher.attention, teacher.in_channels)
    have = (student.channels, student.mults, student.blocks, student.attention, student.in_channels)
    if teacher.unshuffle != 1 or student.unshuffle != 2 or want != have:
        raise ValueError(f"a {student} student cannot start from a {teacher} teacher: the student must be the teacher "
                         f"without its full-resolution level, on 2x2 sub-images")


def teacher_name(name: str) -> str:
    """The teacher parameter that the student's parameter `name` starts from."""
    m = re.match(r"net\.(down|downsample)\.(\d+)\.(.*)", name)
    if m:
        return f"net.{m.group(1)}.{int(m.group(2)) + 1}.{m.group(3)}"
    return name     # emb_mlp, mid1, attn, mid2, up.i, upsample.i: the same index (the decoder runs coarse to fine)


@torch.no_grad()
def make_student(teacher: ConsistencyModel, cfg: UNetConfig, seed: int = 0) -> ConsistencyModel:
    """A ConsistencyModel of `cfg` whose shared weights are the teacher's; the new ends get torch's initialisation,
    except that the output convolution gets small random weights instead of zeros (so that gradients reach the
    teacher's weights from the first step)."""
    check_pair(teacher.net.cfg, cfg)
    torch.manual_seed(seed)
    student = ConsistencyModel(cfg)
    source = teacher.state_dict()
    state = student.state_dict()
    for name in state:
        if name.startswith(NEW):
            continue
        t = source[teacher_name(name)]
        if t.shape != state[name].shape:
            raise ValueError(f"{name}: shape {tuple(state[name].shape)} but the teacher's {teacher_name(name)} is {tuple(t.shape)}")
        state[name] = t.clone()
    student.load_state_dict(state)
    student.net.conv_out.weight.normal_(0.0, 1e-3)
    return student.eval()


def main(argv=None):
    from .export import export_onnx, load_onnx_weights, metadata, read_metadata
    p = argparse.ArgumentParser(prog="python3 -m cmtrain.student", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="teacher", required=True, help="the teacher: a cm ONNX file made by cmtrain.export")
    p.add_argument("--preset", default="small-s2d", help="the student's architecture (unet.PRESETS)")
    p.add_argument("--out", required=True, help="where to write the student's starting weights (cm ONNX)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.preset not in PRESETS:
        p.error(f"--preset: expected one of {', '.join(sorted(PRESETS))} but received {a.preset}")
    teacher = load_onnx_weights(a.teacher)
    student = make_student(teacher, PRESETS[a.preset], a.seed)
    meta = read_metadata(a.teacher)
    export_onnx(student, a.out, metadata(
        student, name=f"{meta.get('cm.name', 'model')}-student", license=meta.get("cm.license", ""),
        trained_on=f"not trained: {a.preset} with the weights of {meta.get('cm.name', a.teacher)} where they fit",
        plans=json.loads(meta["cm.plans"]), task_plans=json.loads(meta.get("cm.task_plans", "null") or "null")))
    print(f"wrote {a.out}: {a.preset} from {a.teacher}")


if __name__ == "__main__":
    main()
