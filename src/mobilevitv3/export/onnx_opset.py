"""Rewrite an opset-18 ONNX graph as opset 17, for runtimes that stop at 17.

The torch.export-based ONNX exporter (the only one that keeps height and width symbolic) emits opset 18, and neither
ONNX's version converter (no Split 18->17 adapter) nor onnxscript's (18 and up) goes back to 17. Between 17 and 18
only the signatures of a few operators changed; this moves them back and then lets the opset-17 checker judge the
whole graph, so anything else that needs 18 is an error rather than a silently wrong file.
"""
from __future__ import annotations

import onnx
from onnx import helper, numpy_helper

# Reductions whose `axes` became an input in opset 18 (ReduceSum's already was one in 13).
_AXES_TO_ATTRIBUTE = {"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                      "ReduceMin", "ReduceProd", "ReduceSumSquare"}
_RESIZE_DEFAULTS = {"antialias": 0, "keep_aspect_ratio_policy": b"stretch"}  # attributes new in 18


def downgrade_to_opset17(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` (default domain at opset 18 or lower) that declares opset 17; raises ValueError if a node
    has no opset-17 equivalent."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    if model.functions:
        raise ValueError("graphs with local functions are not supported (export with optimize=True inlines them)")
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    constants |= {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                  if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        attrs = {a.name: a for a in node.attribute}
        if node.op_type in _AXES_TO_ATTRIBUTE:
            _axes_to_attribute(node, attrs, constants)
        elif node.op_type == "Split" and "num_outputs" in attrs:
            if len(node.input) < 2 or not node.input[1]:
                raise ValueError(f"Split {node.name!r} gives only num_outputs (opset 18); opset 17 needs sizes")
            node.attribute.remove(attrs["num_outputs"])
        elif node.op_type == "Resize":
            for name, value in attrs.items():
                if name == "axes" or (name in _RESIZE_DEFAULTS and helper.get_attribute_value(value)
                                      != _RESIZE_DEFAULTS[name]):
                    raise ValueError(f"Resize {node.name!r} uses the opset-18 attribute {name}")
                if name in _RESIZE_DEFAULTS:
                    node.attribute.remove(value)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            if opset.version > 18:
                raise ValueError(f"opset {opset.version} graphs are not supported (export at opset 18)")
            opset.version = min(opset.version, 17)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ValueError(f"the graph is not valid at opset 17: {str(e).strip().splitlines()[0]}") from None
    return model


def _axes_to_attribute(node: onnx.NodeProto, attrs: dict, constants: dict) -> None:
    has_axes = len(node.input) > 1 and bool(node.input[1])
    noop = attrs.pop("noop_with_empty_axes", None)
    if noop is not None:
        if noop.i and not has_axes:
            raise ValueError(f"{node.op_type} {node.name!r} uses noop_with_empty_axes (opset 18)")
        node.attribute.remove(noop)
    if has_axes:
        if node.input[1] not in constants:
            raise ValueError(f"{node.op_type} {node.name!r} has computed axes; opset 17 needs constant axes")
        node.attribute.append(helper.make_attribute("axes", [int(a) for a in constants[node.input[1]].ravel()]))
        del node.input[1]
