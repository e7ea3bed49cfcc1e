"""The one training configuration: a typed dataclass resolved as defaults < recipe YAML < command-line flags.

The defaults are the library's "main job": MobileViTv3-XXS from scratch on the embedded `digits` data set, sized to
reach >= 99% top-1 in under a minute of training on a 2-core CPU (see `TrainConfig`). Recipes
(`recipes/<model>.<tag>.yaml`) hold the official ImageNet / VOC / COCO settings as flat `field: value` mappings.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import UserError
from ..models import get_tag, split_arch


@dataclass
class TrainConfig:
    # --- what to train, on what. Defaults: the digits main job (64x64 upscaled 8x8 digits: the smallest size at
    # which every MobileViT block still sees a >= 2x2 map, so the transformer layers do real work).
    model: str = "mobilevitv3_xxs"
    data: str = "digits"                   # an ImageFolder root with train/ and val/, or `digits`
    # VOC segmentation only, the official `use_coco_data`: COCO train2017 images with VOC-class masks added to
    # the training set. A COCO 2017 root (masks built once into `coco_cache`, default <coco_root>/coco_preprocess)
    # or an official `coco_preprocess` folder (holding train_2017.txt)
    coco_root: str | None = None
    coco_cache: str | None = None
    out: str = "runs/train"
    hub_folder: str | None = None          # also write best.pt as a Hugging Face Hub folder here (`hub.save_run`)
    task: Literal["classification", "segmentation", "detection"] | None = None   # None: the model name's
    num_classes: int | None = None         # None: from the data set
    weights: str | None = None             # start from these weights (a different num_classes resets the head)
    weights_copy: Literal["model", "ema"] = "model"   # which copy of a file holding both (our last.pt) to start from
    qat: bool = False                      # quantization-aware training (PT2E fake quantization) from --weights
    model_kwargs: dict = field(default_factory=dict)   # to create_model (dropout, attn_dropout, ...)
    task_options: dict = field(default_factory=dict)   # free-form, read by the task (mask_fill, ...)
    # --- schedule (the digits main job; every recipe sets its own). AdamW at twice the official peak lr (4e-3)
    # with a 50-step warm-up: 8 epochs (184 steps of 64) end at >= 99.17% val top-1, raw and EMA, over seeds 0-3
    # in ~50 s of training on the 2-core CPU. At the official 2e-3, 8 epochs ended at 98.6% and 12 were needed
    # (103 s); BENCHMARKS.md "Training speed" has every run of that choice.
    epochs: int = 8
    batch_size: int = 64                   # per process (the sampler scales it with resolution)
    eval_batch_size: int | None = None     # None: batch_size
    accum_steps: int = 1
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 0.004                      # max lr of the cosine (and the fixed lr with scheduler=fixed)
    min_lr: float = 0.0002
    scheduler: Literal["cosine", "fixed"] = "cosine"
    warmup_iterations: int = 50
    warmup_init_lr: float = 0.0002
    weight_decay: float = 0.01
    no_decay_bn_filter_bias: bool = False  # True: no decay on 1-D parameters (biases, norm weights)
    momentum: float = 0.9                  # SGD
    nesterov: bool = False                 # SGD
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    head_lr_multiplier: float = 1.0        # lr factor for head parameter groups (tasks that have a head)
    aux_loss_weight: float = 0.0           # auxiliary-head loss weight (segmentation)
    # segmentation: weight each class by (its share of the batch's labelled pixels) ** -class_balance, normalised
    # to a mean pixel weight of 1 (0: plain cross-entropy, the official recipes; 0.5: the digit scenes, 92% ground)
    class_balance: float = 0.0
    grad_clip: float | None = None         # max gradient norm (None: no clipping)
    label_smoothing: float = 0.1
    # --- data and augmentation
    image_size: int = 64                   # training crop (the sampler's base size)
    eval_resize: int | None = None         # shorter side before the centre crop (None: the tag's, or 9/8 x crop)
    eval_crop: int | None = None           # None: the tag's crop, or image_size
    interpolation: Literal["bilinear", "bicubic"] | None = None     # None: the tag's / family's
    channel_order: Literal["rgb", "bgr"] | None = None              # None: the tag's / family's (v1: bgr)
    rrc_scale: tuple[float, float] = (0.35, 1.0)   # digits: a crop of 8% of a digit is no longer that digit
    rrc_ratio: tuple[float, float] = (0.75, 1.333)
    hflip: float = 0.0                     # digits are not mirror-symmetric (ImageNet recipes: 0.5)
    randaugment: bool = False
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9
    random_erase: float = 0.0              # probability
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    mix_prob: float = 0.5                  # probability to apply the chosen one of mixup/cutmix to a batch
    # the official samplers: variable_batch (v1 ImageNet), fixed = the family's batch sampler (v1_fixed: cumulative
    # shuffle; v2_fixed: fresh shuffle per epoch, DDP shards first); the two fixed ones may also be named
    sampler: Literal["fixed", "variable_batch", "v1_fixed", "v2_fixed"] = "fixed"
    sampler_min_size: int = 160
    sampler_max_size: int = 320
    sampler_scales: int = 5
    sampler_check_scale: int = 32
    workers: int = 0                       # DataLoader workers per process (digits is in memory: 0 is fastest)
    # --- engine
    ema: bool = True
    # Official semantics: ema = (1 - m) * ema + m * model, BatchNorm buffers included. The recipes' 0.0005 suits
    # ~1.5M steps, not a few hundred: over 460 steps at m = 0.01 a (1-m)^460 = 1% share of the initial running_var
    # (1.0) stayed in BN variances of ~0.04 and the EMA model scored 22% against 99% for the raw weights; 0.05
    # leaves ~1e-4 of the init after the main job's 184 steps and still averages over the last ~20 steps.
    ema_momentum: float = 0.05
    # official checkpoint files beside best.pt: checkpoint[_ema]_best.pt and the average of the k best
    # (checkpoint[_ema]_avg.pt, from k + 1 distinct best values on); 0: none of them
    k_best_checkpoints: int = 5
    amp: Literal["auto", "bf16", "fp16", "none"] = "auto"   # auto: fp16 on CUDA, none on CPU
    channels_last: bool = True             # CPU training step 1.5x faster (oneDNN convs); recipes set their own
    sync_bn: bool = False
    seed: int = 0
    device: str = "auto"                   # auto: cuda if available
    threads: int | None = None             # torch threads per process (None: cores / local world size)
    resume: bool = False
    max_steps_per_epoch: int | None = None     # cut epochs short (smoke tests)

    def __post_init__(self) -> None:
        check_ranges(self)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}


# Allowed ranges, checked when a config is made (before any file is written): (low, high, low open, high open).
MIN_SIZE = 32   # one pixel at output stride 32
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "epochs": (1, math.inf, False, False), "batch_size": (1, math.inf, False, False),
    "eval_batch_size": (1, math.inf, False, False), "accum_steps": (1, math.inf, False, False),
    "lr": (0, math.inf, True, False), "min_lr": (0, math.inf, False, False),
    "warmup_iterations": (0, math.inf, False, False), "warmup_init_lr": (0, math.inf, False, False),
    "weight_decay": (0, math.inf, False, False), "momentum": (0, 1, False, True), "eps": (0, 1, True, True),
    "head_lr_multiplier": (0, math.inf, True, False), "aux_loss_weight": (0, math.inf, False, False),
    "class_balance": (0, 1, False, False),
    "grad_clip": (0, math.inf, True, False), "label_smoothing": (0, 1, False, True),
    "image_size": (MIN_SIZE, 4096, False, False), "eval_resize": (MIN_SIZE, 8192, False, False),
    "eval_crop": (MIN_SIZE, 4096, False, False), "hflip": (0, 1, False, False),
    "randaugment_ops": (0, 16, False, False), "randaugment_magnitude": (0, 30, False, False),
    "random_erase": (0, 1, False, False), "mixup_alpha": (0, math.inf, False, False),
    "cutmix_alpha": (0, math.inf, False, False), "mix_prob": (0, 1, False, False),
    "sampler_min_size": (MIN_SIZE, 4096, False, False), "sampler_max_size": (MIN_SIZE, 4096, False, False),
    "sampler_scales": (1, 64, False, False), "sampler_check_scale": (1, 512, False, False),
    "workers": (0, 256, False, False), "ema_momentum": (0, 1, True, False), "seed": (0, 2**63 - 1, False, False),
    "threads": (1, 1024, False, False), "max_steps_per_epoch": (1, math.inf, False, False),
    "num_classes": (1, 100_000, False, False), "k_best_checkpoints": (0, 1000, False, False),
}


def _in_range(name: str, value: float) -> None:
    low, high, low_open, high_open = RANGES[name]
    ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok or not math.isfinite(value):   # an infinite lr or alpha is never a setting; NaN fails every comparison
        if high == math.inf:
            raise UserError(f"{name} must be a finite number {'>' if low_open else '>='} {low:g}, got {value!r}")
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise UserError(f"{name} must be in {lo}{low:g}, {high:g}{hi}, got {value!r}")


def check_ranges(cfg: TrainConfig) -> None:
    """Every numeric field within its range, pairs in order, the model name known (devices and the run folder are
    checked by the trainer: a saved config must stay loadable on another machine)."""
    for name in RANGES:
        value = getattr(cfg, name)
        if value is not None:
            _in_range(name, value)
    if not all(0 <= b < 1 for b in cfg.betas):
        raise UserError(f"betas must each be in [0, 1), got {','.join(map(str, cfg.betas))}")
    for name, bound in (("rrc_scale", 1.0), ("rrc_ratio", math.inf)):
        low, high = getattr(cfg, name)
        if not (0 < low <= high <= bound and math.isfinite(high)):
            most = f" <= {bound:g}" if bound < math.inf else ""
            raise UserError(f"{name} must be two finite numbers 0 < low <= high{most}, got {low:g},{high:g}")
    if cfg.sampler_min_size > cfg.sampler_max_size:
        raise UserError(f"sampler_min_size ({cfg.sampler_min_size}) must not exceed sampler_max_size "
                        f"({cfg.sampler_max_size})")
    if cfg.min_lr > cfg.lr:
        raise UserError(f"min_lr ({cfg.min_lr:g}) must not exceed lr ({cfg.lr:g})")
    if cfg.qat and (cfg.weights is None or cfg.sampler != "fixed"):
        raise UserError("--qat fine-tunes a trained float model at one image size: give --weights FP32_CKPT and "
                        "keep --sampler fixed")
    arch, _, tag = cfg.model.partition(".")
    if tag:
        get_tag(cfg.model)        # an unknown architecture or tag: one line naming the close matches
    task = split_arch(arch)[0]
    if cfg.task is not None and cfg.task != task:
        raise UserError(f"--task {cfg.task} does not fit --model {cfg.model}, a {task} model; leave --task out "
                        f"(the model name decides it)")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
HINTS = typing.get_type_hints(TrainConfig)


def base_type(hint: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed) of an annotation such as `int | None`."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True  # noqa: UP007 (built from a runtime tuple)
    return hint, False


def coerce(name: str, value: Any) -> Any:
    """Check/convert one value (from YAML or a flag string) to the field's type; a mismatch is a UserError."""
    hint, optional = base_type(HINTS[name])
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and optional):
        if optional:
            return None
        raise UserError(f"{name} cannot be null")
    origin = typing.get_origin(hint)
    try:
        if origin is Literal:
            if value not in typing.get_args(hint):
                raise ValueError(f"expected one of {', '.join(map(str, typing.get_args(hint)))}")
            return value
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError("expected true or false")
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            if len(items) != len(typing.get_args(hint)):
                raise ValueError(f"expected {len(typing.get_args(hint))} comma-separated numbers")
            return tuple(t(v) for t, v in zip(typing.get_args(hint), items))
        if hint is dict:
            value = json.loads(value) if isinstance(value, str) else value
            if not isinstance(value, dict):
                raise ValueError("expected a mapping (JSON on the command line)")
            return dict(value)
        if isinstance(value, bool) and hint is not bool:   # YAML `batch_size: true` is not the number 1
            raise ValueError(f"expected {getattr(hint, '__name__', hint)}, not true/false")
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError("expected an integer")
        return hint(value)
    except (ValueError, TypeError, json.JSONDecodeError) as e:
        raise UserError(f"bad value for {name}: {value!r} ({e})") from None


def recipe_path(name_or_path: str) -> Path | None:
    """A YAML path, or a packaged recipe name (`mobilevitv3_xxs.in1k`); None when neither exists."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    packaged = resources.files("mobilevitv3") / "recipes" / f"{name_or_path.removesuffix('.yaml')}.yaml"
    return Path(str(packaged)) if packaged.is_file() else None


def packaged_recipes() -> list[str]:
    folder = resources.files("mobilevitv3") / "recipes"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


class UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML silently keeps the last value)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_recipe(name_or_path: str) -> dict[str, Any]:
    path = recipe_path(name_or_path)
    if path is None:
        close = difflib.get_close_matches(name_or_path, packaged_recipes(), n=3, cutoff=0.5)
        raise UserError(f"recipe {name_or_path!r} not found (not a .yaml file nor a packaged recipe"
                        f"{'; did you mean ' + ', '.join(close) + '?' if close else ''})")
    try:
        raw = yaml.load(path.read_text(), Loader=UniqueKeyLoader) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}: not valid YAML ({what}{f' at line {mark.line + 1}' if mark else ''})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a recipe is a mapping of TrainConfig fields")
    return {k: v for k, v in raw.items() if not k.startswith("_")}   # `_source:` etc. are documentation


def _check_names(values: dict[str, Any], where: str) -> None:
    for key in values:
        if key not in FIELDS:
            close = difflib.get_close_matches(key, list(FIELDS), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"{where}: unknown field {key!r}{hint}")


def resolve(recipe: str | None = None, overrides: dict[str, Any] | None = None, *,
            base: dict[str, Any] | None = None) -> TrainConfig:
    """defaults < recipe (or `base`, a saved config when resuming) < overrides. Without a recipe,
    `recipes/<model>.yaml` is used when it is packaged (e.g. `--model mobilevitv3_xxs.in1k`)."""
    overrides = dict(overrides or {})
    _check_names(overrides, "option")
    model = overrides.get("model")
    if recipe is None and base is None and model and Path(model).suffix not in (".yaml", ".yml") \
            and recipe_path(model) is not None:
        recipe = model
    values = dict(base) if base is not None else load_recipe(recipe) if recipe else {}
    _check_names(values, f"recipe {recipe}" if recipe else "saved config")
    values.update(overrides)
    return TrainConfig(**{k: coerce(k, v) for k, v in values.items()})


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """A config saved in a checkpoint / config.yaml (unknown fields from newer versions are an error)."""
    _check_names(values, "saved config")
    return TrainConfig(**{k: coerce(k, v) for k, v in values.items()})
