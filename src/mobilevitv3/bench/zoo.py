"""Model-zoo summaries behind `mobilevitv3 list` and `mobilevitv3 ablation`: counted, never copied."""
from __future__ import annotations

from ..models import ABLATION, create_model, list_models
from ..models.backbone import MobileViT
from ..models.config import PAPER
from .counting import official_macs, param_count, true_macs

# ImageNet-1k top-1 (%) of the released checkpoints at 256x256, as reported -- never measured here (no ImageNet):
# MobileViTv3: the official MobileViTv3 README (micronDLA/MobileViTv3); MobileViTv1 and v2: the ml-cvnets model zoo
# (docs/source/en/general/README-model-zoo.md; v1 "legacy" CVNets v0.1 weights). The L2 variants and v3-1.25...2.0
# have no reported figure there.
REPORTED_TOP1: dict[str, float] = {
    "mobilevitv3_s": 79.3, "mobilevitv3_xs": 76.7, "mobilevitv3_xxs": 70.98,
    "mobilevitv3_100": 78.64, "mobilevitv3_075": 76.55, "mobilevitv3_050": 72.33,
    "mobilevit_xxs": 69.0, "mobilevit_xs": 74.7, "mobilevit_s": 78.3,
    "mobilevitv2_050": 70.18, "mobilevitv2_075": 75.56, "mobilevitv2_100": 78.09, "mobilevitv2_125": 79.65,
    "mobilevitv2_150": 80.38, "mobilevitv2_175": 80.84, "mobilevitv2_200": 81.17,
}


def _row(model, name: str, image_size: int) -> dict:
    return {"name": name, "params": param_count(model), "macs": official_macs(model, image_size),
            "true_macs": true_macs(model, image_size)}


def describe(pattern: str = "*", *, image_size: int = 256, tags: bool = False) -> list[dict]:
    """Parameters (exact), official-profiler MACs and true MACs per model, beside the reported figures."""
    rows = []
    for name in list_models(pattern, tags=tags):
        row = _row(create_model(name), name, image_size)
        arch = name.split(".")[0]
        if arch in PAPER:
            row["reported_params_m"], row["reported_macs_m"] = PAPER[arch]
        rows.append(row)
    return rows


def ablation(image_size: int = 256) -> list[dict]:
    """The paper's block ablation: MobileViTv1-S with the four MobileViTv3 changes applied one after another."""
    return [{**_row(MobileViT(cfg), label, image_size),
             "block": {k: getattr(cfg.block, k) for k in ("fusion_kernel", "fuse", "residual", "local_dw")}}
            for label, cfg in ABLATION.items()]


def table(rows: list[dict]) -> str:
    """Plain-text table for humans."""
    lines = [f"{'model':44s} {'params':>11s} {'MACs (M)':>10s} {'true MACs':>10s}  reported"]
    for r in rows:
        rep = (f"{r['reported_params_m']}M / {r['reported_macs_m']}M" if "reported_params_m" in r else "")
        macs = f"{r['macs'] / 1e6:>10.3f} {r['true_macs'] / 1e6:>10.1f}"
        lines.append(f"{r['name']:44s} {r['params']:>11,d} {macs}  {rep}")
    return "\n".join(lines)
