"""Faster students that start from a trained `small` model's weights: `small-s2d` and `small-thin`.

  python3 -m cmtrain.student --from ../models/default.onnx --preset small-thin --out runs/student/base-student.onnx

`small-s2d` (unet.PRESETS) is `small` without its full-resolution level: the image's 2x2 sub-images (pixel unshuffle,
12 channels at half resolution) go through a new 3x3 convolution into what was `small`'s level 1, and the output comes
back through a new 3x3 convolution to 12 channels and a pixel shuffle; the teacher's levels 1-3 become its levels
0-2. `small-thin` keeps every level but makes the full-resolution one 16 channels wide instead of 32 (and the
upsampling convolution into it narrow): its levels 1-3 are the teacher's. Every weight whose place and shape the two
share (the noise embedding, the lower levels down and up, the middle with its attention) starts as the teacher's;
the rest is new, and distillation from the teacher (cmtrain.train with the teacher as the anchor at every noise
level) teaches it. One evaluation costs 0.36x (s2d) and 0.62x (thin) of `small`'s in int8; an hour of distillation
did not make s2d good enough to ship (its superres x2 stayed 3.2 dB under the teacher's: bench/results/student.md).
"""
import argparse
import json
import re

import torch

from .consistency import ConsistencyModel
from .unet import PRESETS, UNetConfig

def check_pair(teacher: UNetConfig, student: UNetConfig) -> None:
    """The student must be the teacher with its first level removed (on 2x2 sub-images) or narrowed."""
    plain = teacher.unshuffle == 1 and not teacher.narrow_up
    same = (teacher.channels, teacher.blocks, teacher.attention, teacher.in_channels) == \
        (student.channels, student.blocks, student.attention, student.in_channels)
    s2d = student.unshuffle == 2 and tuple(student.mults) == tuple(teacher.mults[1:])
    thin = (student.unshuffle == 1 and student.narrow_up and tuple(student.mults[1:]) == tuple(teacher.mults[1:])
            and student.mults[0] < teacher.mults[0])
    if not (plain and same and (s2d or thin)):
        raise ValueError(f"a {student} student cannot start from a {teacher} teacher: the student must be the teacher "
                         f"without its full-resolution level, on 2x2 sub-images, or with a narrower one")


def teacher_name(name: str, cfg: UNetConfig = None) -> str:
    """The teacher parameter that the student's parameter `name` starts from (s2d: the encoder's levels shift by one;
    the decoder runs coarse to fine, so its indices stay)."""
    if cfg is not None and cfg.unshuffle == 1:
        return name
    m = re.match(r"net\.(down|downsample)\.(\d+)\.(.*)", name)
    if m:
        return f"net.{m.group(1)}.{int(m.group(2)) + 1}.{m.group(3)}"
    return name


@torch.no_grad()
def make_student(teacher: ConsistencyModel, cfg: UNetConfig, seed: int = 0) -> ConsistencyModel:
    """A ConsistencyModel of `cfg` whose weights are the teacher's wherever the teacher has a parameter of that place
    and shape; the others get torch's initialisation, except that the output convolution gets small random weights
    instead of zeros (so that gradients reach the teacher's weights from the first step) and other zeros tiny ones."""
    check_pair(teacher.net.cfg, cfg)
    torch.manual_seed(seed)
    student = ConsistencyModel(cfg)
    source = teacher.state_dict()
    state = student.state_dict()
    for name in state:
        t = source.get(teacher_name(name, cfg))
        if t is None or t.shape != state[name].shape:
            continue
        state[name] = t.clone()
    student.load_state_dict(state)
    student.net.conv_out.weight.normal_(0.0, 1e-3)
    # Every all-zero parameter gets tiny random values: new ones that torch starts at zero (each new block's last
    # convolution, the norms' biases) and the teacher's that are exactly zero (a GroupNorm bias read back from its
    # ONNX file): the exporter writes equal tensors once, and cmtrain.export.load_onnx_weights needs one per parameter.
    for name, p in student.named_parameters():
        if not p.any():
            p.normal_(0.0, 1e-5)
    return student.eval()


def main(argv=None):
    from .export import export_onnx, load_onnx_weights, metadata, read_metadata
    p = argparse.ArgumentParser(prog="python3 -m cmtrain.student", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="teacher", required=True, help="the teacher: a cm ONNX file made by cmtrain.export")
    p.add_argument("--preset", default="small-thin", help="the student's architecture (unet.PRESETS)")
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
