"""A toy class-conditional model for the CLI's tests: denoised = class_label / 10 everywhere (x and sigma only fix
the shape). It is not a consistency model; it only follows the model contract, so that a test can see which class
reached the network. Regenerate: cd training && /usr/bin/python3 -m cmtrain.toy ../fixtures/class-toy.onnx"""
import sys

import onnx
from onnx import TensorProto, helper



def build(path: str) -> None:
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"]),
        helper.make_tensor_value_info("sigma", TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info("class_labels", TensorProto.INT64, ["N"]),
    ]
    output = helper.make_tensor_value_info("denoised", TensorProto.FLOAT, ["N", 3, "H", "W"])
    nodes = [
        helper.make_node("Cast", ["class_labels"], ["c"], to=TensorProto.FLOAT),
        helper.make_node("Constant", [], ["tenth"], value=helper.make_tensor("tenth", TensorProto.FLOAT, [], [0.1])),
        helper.make_node("Mul", ["c", "tenth"], ["v"]),
        helper.make_node("Constant", [], ["shape"], value=helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 1, 1, 1])),
        helper.make_node("Reshape", ["v", "shape"], ["v4"]),
        helper.make_node("Mul", ["x", "sigma_zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "v4"], ["denoised"]),
    ]
    zero = helper.make_tensor("sigma_zero", TensorProto.FLOAT, [], [0.0])
    graph = helper.make_graph(nodes, "class_toy", inputs, [output], initializer=[zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in {
        "cm.format": "1", "cm.resolution": "16", "cm.channels": "3", "cm.sigma_min": "0.002", "cm.sigma_max": "80",
        "cm.sigma_data": "0.5", "cm.rho": "7", "cm.grid": "40", "cm.plans": '{"1":[0,39]}', "cm.num_classes": "10",
        "cm.name": "class-toy", "cm.license": "MIT", "cm.trained_on": "nothing: a toy graph for tests",
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, path)


if __name__ == "__main__":
    build(sys.argv[1])
