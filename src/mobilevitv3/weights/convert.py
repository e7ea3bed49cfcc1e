"""Checkpoint layouts -> ours: official MobileViT/MobileViTv3 releases (ml-cvnets keys) and timm's models.

Each layout is one ordered rename table (regex -> replacement) applied to every key; shapes are checked by
`weights.load.load_state_dict_strict` against the model afterwards, so a rename that misses shows up as an error.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import torch

Rule = tuple[str, str | Callable[[re.Match], str]]

OFFICIAL: list[Rule] = [
    (r"^encoder\.", "backbone."),
    (r"(^|\.)conv_1\.", r"\1stem."),
    (r"(^|\.)layer_(\d)\.", lambda m: f"{m[1]}stages.{int(m[2]) - 1}."),
    (r"\.block\.exp_1x1\.", ".expand."), (r"\.block\.conv_3x3\.", ".dw."), (r"\.block\.red_1x1\.", ".project."),
    (r"\.local_rep\.(conv_3x3|0)\.", ".local_rep.conv_kxk."), (r"\.local_rep\.1\.", ".local_rep.conv_1x1."),
    (r"\.pre_norm_(mha|attn)\.0\.", ".norm1."), (r"\.pre_norm_(mha|attn)\.1\.", ".attn."),
    (r"\.pre_norm_ffn\.0\.", ".norm2."), (r"\.pre_norm_ffn\.1\.", ".mlp.fc1."),
    (r"\.pre_norm_ffn\.[34]\.", ".mlp.fc2."),
    (r"^conv_1x1_exp\.", "final_conv."), (r"^classifier\.(fc|1)\.", "fc."),
    # segmentation heads
    (r"^seg_head\.aspp\.aspp_layer\.convs\.4\.aspp_pool\.conv_1x1\.", "head.aspp.pool."),
    (r"^seg_head\.aspp\.aspp_layer\.convs\.(\d)\.", r"head.aspp.branches.\1."),
    (r"^seg_head\.aspp\.aspp_layer\.project\.", "head.aspp.project."),
    (r"^seg_head\.psp_layer\.psp_branches\.(\d)\.1\.", r"head.psp.branches.\1."),
    (r"^seg_head\.psp_layer\.fusion\.0\.", "head.psp.project."),
    (r"^seg_head\.classifier\.(classifier\.)?", "head.classifier."),
    (r"^seg_head\.aux_head\.0\.", "aux_head.conv."), (r"^seg_head\.aux_head\.2\.", "aux_head.classifier."),
    # detection
    (r"^extra_layers\.os_-1\.1\.", "extra_layers.3."),
    (r"^extra_layers\.os_(\d+)\.", lambda m: f"extra_layers.{(64, 128, 256).index(int(m[1]))}."),
    (r"^ssd_heads\.(\d)\.loc_cls_layer\.(block\.)?", r"ssd_heads.\1.predict."),
    (r"^ssd_heads\.(\d)\.proj_layer\.", r"ssd_heads.\1.proj."),
    (r"\.(dw|pw)_conv\.", r".\1."),
    (r"\.(qkv_proj|out_proj|fc1|fc2)\.block\.conv\.", r".\1."),  # v2 family: plain 1x1 convs in attention/FFN
    (r"(^|\.)block\.(conv|norm)\.", r"\1\2."),
]

TIMM: list[Rule] = [
    (r"\.bn\.", ".norm."),
    (r"\.conv1_1x1\.", ".expand."), (r"\.conv2_kxk\.", ".dw."), (r"\.conv3_1x1\.", ".project."),
    (r"^(stages\.\d\.1)\.conv_kxk\.", r"\1.local_rep.conv_kxk."),
    (r"^(stages\.\d\.1)\.conv_1x1\.", r"\1.local_rep.conv_1x1.conv."),
    (r"\.transformer\.(\d+)\.", r".global_rep.\1."), (r"\.attn\.qkv\.", ".attn.qkv_proj."),
    (r"\.attn\.proj\.", ".attn.out_proj."), (r"\.conv_fusion\.", ".fusion."), (r"^head\.fc\.", "fc."),
]


def rename(state: dict[str, torch.Tensor], rules: list[Rule]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def from_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm `mobilevit_*`/`mobilevitv2_*` keys -> ours. timm keeps the block's final norm as `stages.k.1.norm`;
    ours is the last entry of `global_rep`, after the transformer layers."""
    state = rename(state, TIMM)
    depth: dict[str, int] = {}
    for key in state:
        if m := re.match(r"^(stages\.\d\.1)\.global_rep\.(\d+)\.", key):
            depth[m[1]] = max(depth.get(m[1], 0), int(m[2]) + 1)
    return {re.sub(r"^(stages\.\d\.1)\.norm\.", lambda m: f"{m[1]}.global_rep.{depth[m[1]]}.", k): v
            for k, v in state.items()}


def detect_layout(state: dict[str, torch.Tensor]) -> str:
    """'official', 'timm' or 'ours', from tell-tale key names."""
    keys = list(state)
    if any(re.match(r"^(encoder\.)?(conv_1|layer_\d)\.", k) for k in keys):
        return "official"
    if any(".conv1_1x1." in k or ".transformer." in k or k.startswith("stem.bn.") for k in keys):
        return "timm"
    return "ours"


def to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    layout = detect_layout(state)
    if layout == "official":
        return rename(state, OFFICIAL)
    if layout == "timm":
        return from_timm(state)
    return state
