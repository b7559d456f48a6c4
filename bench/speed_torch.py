"""PyTorch side of the speed benchmark (spawned by bench/speed.mjs; prints one JSON object).

  /usr/bin/python3 bench/speed_torch.py [--checkpoint training/runs/default/last.pt] [--preset small]
                                        [--batches 1,4,16] [--threads 1,2] [--repeats 9] [--smoke]

The consistency model of training/cmtrain (UNet + scalings), EMA weights of the checkpoint as cmtrain.export does,
or random weights of the preset (speed does not depend on the weights). Measures, in eager mode under
torch.inference_mode: median milliseconds per call at each batch size and thread count; the model's FLOPs per 64x64
evaluation (2 x the multiply-accumulates of every convolution, linear layer and attention matrix product, counted with
forward hooks); and the CPU's float32 throughput on a large matrix product: torch.mm (this Debian build uses a generic
BLAS: far from the CPU's peak) and the same product as a 1x1 convolution through oneDNN; with --matmul-onnx it also
writes a MatMul graph for bench/speed.mjs to time in onnxruntime.
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "training"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from cmtrain.consistency import ConsistencyModel  # noqa: E402
from cmtrain.export import load_checkpoint  # noqa: E402
from cmtrain.unet import PRESETS, Attention, UNetConfig, count_params  # noqa: E402


def timed(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(out), out


def count_flops(model, size=64):
    """2 x MACs of Conv2d, Linear and the two attention products, for one image of size x size."""
    macs = [0]

    def conv_hook(m, inp, out):
        n = out.shape[0]
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        macs[0] += out.numel() // n * k

    def linear_hook(m, inp, out):
        macs[0] += m.in_features * m.out_features * (out.numel() // out.shape[-1]) // out.shape[0]

    def attn_hook(m, inp, out):
        _, c, h, w = inp[0].shape
        macs[0] += 2 * c * (h * w) ** 2   # q^T k and a v

    hooks = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(linear_hook))
        elif isinstance(mod, Attention):
            hooks.append(mod.register_forward_hook(attn_hook))
    with torch.inference_mode():
        model(torch.randn(1, 3, size, size), torch.tensor([1.0]))
    for h in hooks:
        h.remove()
    return 2 * macs[0]


def write_matmul_onnx(path, n):
    import onnx
    from onnx import TensorProto, helper
    a = helper.make_tensor_value_info("A", TensorProto.FLOAT, ["n", "n"])   # any square size
    b = helper.make_tensor_value_info("B", TensorProto.FLOAT, ["n", "n"])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["n", "n"])
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["Y"])], "matmul", [a, b], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default=os.path.join(HERE, "..", "training", "runs", "default", "last.pt"))
    p.add_argument("--preset", default="small")
    p.add_argument("--arch", help="the ONNX model's cm.architecture JSON: the architecture to build (overrides --preset)")
    p.add_argument("--batches", default="1,4,16")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--matmul", type=int, default=1024)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--matmul-onnx", help="also write an ONNX graph Y = A @ B (square, float32) here, for onnxruntime's peak")
    a = p.parse_args()
    if a.smoke:
        a.batches, a.threads, a.repeats, a.matmul = "1", "1", 2, 256

    want = PRESETS[a.preset]
    if a.arch:
        arch = {k: v for k, v in json.loads(a.arch).items() if k != "type"}
        want = UNetConfig(**{**arch, "mults": tuple(arch["mults"])})
    model = None
    if a.checkpoint and os.path.exists(a.checkpoint):
        try:
            ckpt_cfg = torch.load(a.checkpoint, map_location="cpu")["config"]
            if UNetConfig(**{**ckpt_cfg, "mults": tuple(ckpt_cfg["mults"])}) == want:
                model = load_checkpoint(a.checkpoint)       # EMA weights, eval mode: what cmtrain.export exports
                weights = f"checkpoint {os.path.relpath(a.checkpoint, os.path.join(HERE, '..'))} (EMA weights)"
        except Exception as e:                         # e.g. caught mid-write by a running training
            print(f"speed_torch: cannot load {a.checkpoint}: {e}; using random weights", file=sys.stderr)
    if model is None:
        torch.manual_seed(0)
        model = ConsistencyModel(want).eval()
        weights = (f"random weights of the model's architecture (the checkpoint {a.checkpoint} is missing, unreadable "
                   f"or of another architecture)")

    result = {
        "torch": torch.__version__,
        "weights": weights,
        "config": model.net.cfg.to_json_dict(),
        "params": count_params(model),
        "flops_per_eval_64": count_flops(model, 64),
        "eager_ms": {},
        "matmul_gflops": {},
        "conv1x1_gflops": {},
    }
    gen = torch.Generator().manual_seed(0)
    for threads in [int(t) for t in a.threads.split(",")]:
        torch.set_num_threads(threads)
        per = {}
        for b in [int(x) for x in a.batches.split(",")]:
            x = torch.randn(b, 3, 64, 64, generator=gen)
            sigma = torch.full((b,), 1.0)
            with torch.inference_mode():
                reps = a.repeats if b < 16 else max(3, a.repeats // 2)
                med, _ = timed(lambda: model(x, sigma), 2, reps)
            per[str(b)] = round(med, 3)
        result["eager_ms"][str(threads)] = per
        n = a.matmul
        m1 = torch.randn(n, n, generator=gen)
        m2 = torch.randn(n, n, generator=gen)
        med, _ = timed(lambda: torch.mm(m1, m2), 1, 5 if not a.smoke else 2)
        result["matmul_gflops"][str(threads)] = round(2 * n ** 3 / (med / 1000.0) / 1e9, 2)
        # The same product through oneDNN (the library PyTorch's convolutions use): a 1x1 convolution of n channels
        # over n positions is an n x n x n matrix product.
        conv = nn.Conv2d(n, n, 1, bias=False).eval()
        xin = torch.randn(1, n, n // 32, 32, generator=gen)
        with torch.inference_mode():
            med, _ = timed(lambda: conv(xin), 1, 5 if not a.smoke else 2)
        result["conv1x1_gflops"][str(threads)] = round(2 * n ** 3 / (med / 1000.0) / 1e9, 2)
    result["matmul_size"] = a.matmul
    if a.matmul_onnx:
        write_matmul_onnx(a.matmul_onnx, a.matmul)
        result["matmul_onnx"] = a.matmul_onnx
    print(json.dumps(result))


if __name__ == "__main__":
    main()
