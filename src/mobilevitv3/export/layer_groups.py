"""Layer groups of the MobileViT families, named so that an INT8 recipe can keep whole groups float, and the
per-runtime table of the groups each INT8 toolchain keeps float.

Every toolchain sees the module path of an op: the ONNX exporter names nodes by module scope
(`/backbone/stages.2/stages.2.1/dw/conv/Conv`), OpenVINO keeps those names through its ONNX frontend, and a PT2E
node carries its `nn_module_stack` (`backbone.stages.2.1.dw.conv`, written here as `/backbone/stages/2/1/dw/conv/`).
A group is a regular expression searched in that slash-separated name.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

GROUPS = {
    "stem": r"/stem/",                                               # 3-channel 3x3 conv + SiLU
    "attention": r"/attn/(?!(?:attn/)?(?:qkv_proj|out_proj)/)",      # between the attention's two projections
    "linears": r"/global_rep/.*/(?:qkv_proj|out_proj|mlp)/",         # transformer projections and FFN
    "depthwise": r"/dw/",                                            # MV2 depthwise 3x3
    "pointwise": r"/(?:expand|project|conv_1x1)/",                   # MV2 and local_rep 1x1 convs
    "mv2": r"/(?:expand|dw|project)/",                               # whole inverted residuals
    "local_kxk": r"/conv_kxk/",                                      # MobileViT block's local 3x3
    "fusion": r"/(?:conv_proj|fusion)/",                             # the block's projection / fusion conv
}

# The groups each toolchain keeps float (the rest of what it can quantize is int8), chosen from the per-group latency
# table in docs/export.md, "INT8 layer groups": a group stays float where its int8 kernels plus the Q/DQ around them
# cost more than the float op (onnxruntime: the stem's 3-channel conv is 2.5x slower in int8, QLinearSoftmax ~8x).
# Norms have no int8 kernel in any of them and are float by op type (quantize.FLOAT_OPS, pt2e.FLOAT_MODULES, NNCF's
# transformer scheme).
FLOAT_GROUPS = {
    "onnx": ("stem", "attention"),
    "executorch": ("stem",),       # the attention core is float by module type (pt2e.FLOAT_MODULES)
    "openvino": (),                # NNCF's transformer scheme keeps softmax and the attention's element-wise ops float
}
# Where one architecture's own measurement beats its runtime's default by more than the run-to-run spread (two runs
# agreeing): OpenVINO v3-S with the fusion / projection convs float, 12.99 against 15.43 ms and 15.05 against 16.43.
MODEL_FLOAT_GROUPS = {
    ("openvino", "mobilevitv3_s"): ("fusion",),
}


def default_float_groups(fmt: str, arch: str | None) -> tuple[str, ...]:
    """The groups an INT8 `fmt` file of architecture `arch` keeps float by default."""
    return MODEL_FLOAT_GROUPS.get((fmt, arch), FLOAT_GROUPS[fmt])


def check_groups(groups: Iterable[str]) -> tuple[str, ...]:
    groups = tuple(groups)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown layer group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    return groups


def pattern(groups: Iterable[str]) -> re.Pattern | None:
    """One expression matching a path in any of `groups`; None for no groups."""
    groups = check_groups(groups)
    return re.compile("|".join(f"(?:{GROUPS[g]})" for g in groups)) if groups else None


def module_path(dotted: str) -> str:
    """An nn_module_stack path (`a.b.0.c`) as `/a/b/0/c/`."""
    return "/" + dotted.replace(".", "/") + "/" if dotted else "/"
