"""Classification transforms (torchvision.transforms.v2) from a model tag's `Preprocess` and a training recipe.

Official pipelines scale to [0, 1] without mean/std (training.md §6). v1-based releases read, resize and crop with
OpenCV (BGR, INTER_LINEAR without antialias: `cv_transforms`); v2-based ones with PIL in RGB (bicubic, the resize
on the PIL image itself). Train: RandomResizedCrop -> flip -> [RandAugment] -> tensor -> [RandomErasing]; eval:
resize shorter side (long side truncated) -> centre crop with floor offsets. Batch-level MixUp/CutMix (one of the
two, applied with `mix_prob`) is `batch_mix`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.transforms import InterpolationMode, v2

from ..models.identity import Preprocess
from .cv_transforms import CvEvalTransform, CvTrainTransform, center_offsets

MODES = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


class ChannelOrder(nn.Module):
    """RGB -> BGR on a [C, H, W] tensor (the v1-based releases were trained on OpenCV's BGR)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flip(-3)


@dataclass(frozen=True)
class Pipeline:
    """Everything the transforms need, resolved from the config and the model (picklable for workers)."""
    channel_order: str = "rgb"
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    eval_resize: int | tuple[int, int] = 288
    eval_crop: int | None = 256
    rrc_scale: tuple[float, float] = (0.08, 1.0)
    rrc_ratio: tuple[float, float] = (0.75, 1.333)
    hflip: float = 0.5
    randaugment: bool = False
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9
    random_erase: float = 0.0
    backend: str = "pil"    # "opencv": the v1 family's OpenCV pipeline (BGR reads, INTER_LINEAR, floor crops)


AUGMENT_FIELDS = ("rrc_scale", "rrc_ratio", "hflip", "randaugment", "randaugment_ops", "randaugment_magnitude",
                  "random_erase")


def model_preprocess(model: nn.Module) -> Preprocess:
    """The preprocessing the model's weights expect (its identity: the tag's, or the family's convention)."""
    return model.identity.preprocess


def tagged(model: nn.Module) -> bool:
    """Whether the model carries an official release's settings (exact eval sizes) rather than the family's."""
    return model.identity.tag is not None


def pipeline(cfg: Any, model: nn.Module) -> Pipeline:
    """Config fields win over the tag; an untagged model evaluates at `image_size` after a 9/8 resize (288/256)."""
    pre = model_preprocess(model)
    crop = cfg.eval_crop if cfg.eval_crop is not None else (pre.crop if tagged(model) else cfg.image_size)
    resize = cfg.eval_resize if cfg.eval_resize is not None else (
        pre.resize if tagged(model) else round(crop * 288 / 256))
    interpolation = cfg.interpolation or pre.interpolation
    # the v1 releases read, resized and cropped with OpenCV (training.md §6); asking for bicubic leaves that path
    backend = "opencv" if model.identity.family == "v1" and interpolation == "bilinear" else "pil"
    # evaluation settings carry no training augmentation: the Pipeline's defaults stand in for it
    augment = {name: getattr(cfg, name) for name in AUGMENT_FIELDS if hasattr(cfg, name)}
    augment |= {name: tuple(augment[name]) for name in ("rrc_scale", "rrc_ratio") if name in augment}
    return Pipeline(channel_order=cfg.channel_order or pre.channel_order, backend=backend,
                    interpolation=interpolation, mean=pre.mean, std=pre.std,
                    eval_resize=resize, eval_crop=crop, **augment)


def _tensor_tail(p: Pipeline) -> list[nn.Module]:
    """What runs on the [0, 1] tensor: erasing, mean/std."""
    steps: list[nn.Module] = [v2.RandomErasing(p.random_erase)] if p.random_erase > 0 else []
    if p.mean != (0.0, 0.0, 0.0) or p.std != (1.0, 1.0, 1.0):
        steps.append(v2.Normalize(p.mean, p.std))
    return steps


def _opencv_train(p: Pipeline, size: tuple[int, int]):
    first = CvTrainTransform(tuple(size), scale=p.rrc_scale, ratio=p.rrc_ratio, hflip=p.hflip,
                             flip_channels=p.channel_order == "rgb")
    steps = ([v2.RandAugment(p.randaugment_ops, p.randaugment_magnitude, 31)] if p.randaugment else []) \
        + _tensor_tail(p)
    return v2.Compose([first, *steps]) if steps else first


def train_transform(p: Pipeline, size: tuple[int, int]):
    """PIL path: the crop, flip and RandAugment run on the PIL image itself (PIL's own bicubic, as the v2
    pipeline), then the tensor steps."""
    if p.backend == "opencv":
        return _opencv_train(p, size)
    steps: list[nn.Module] = [v2.RandomResizedCrop(size, scale=p.rrc_scale, ratio=p.rrc_ratio,
                                                   interpolation=MODES[p.interpolation])]
    if p.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p.hflip))
    if p.randaugment:   # torchvision's RandAugment, 31 bins, bilinear: what the v2-family recipe used
        steps.append(v2.RandAugment(p.randaugment_ops, p.randaugment_magnitude, 31,
                                    interpolation=InterpolationMode.BILINEAR))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), *_tensor_tail(p)]
    if p.channel_order == "bgr":   # after RandAugment/erasing: they assume nothing about order, but keep RGB there
        steps.append(ChannelOrder())
    return v2.Compose(steps)


class FloorCenterCrop(nn.Module):
    """The official centre crop (`cv_transforms.center_offsets`: floor offsets) of a [..., H, W] tensor."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        top, left, h, w = center_offsets(*x.shape[-2:], self.size)
        return x[..., top:top + h, left:left + w]


def eval_transform(p: Pipeline):
    """Shorter side (long side truncated) then a floor-centred crop: OpenCV bilinear for `opencv`, else the
    resize on the PIL image itself (PIL's bicubic, antialiased, as the v2 pipeline)."""
    if p.backend == "opencv":
        first = CvEvalTransform(p.eval_resize, p.eval_crop, flip_channels=p.channel_order == "rgb")
        tail = _tensor_tail(replace(p, random_erase=0.0))
        return v2.Compose([first, *tail]) if tail else first
    resize = v2.Resize(p.eval_resize if isinstance(p.eval_resize, int) else tuple(p.eval_resize),
                       interpolation=MODES[p.interpolation], antialias=True)
    steps: list[nn.Module] = [resize, v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if p.eval_crop is not None:
        steps.append(FloorCenterCrop(p.eval_crop))
    steps += _tensor_tail(replace(p, random_erase=0.0))
    if p.channel_order == "bgr":
        steps.append(ChannelOrder())
    return v2.Compose(steps)


def batch_mix(num_classes: int, *, mixup_alpha: float, cutmix_alpha: float, prob: float) -> v2.Transform | None:
    """The official batch mix: pick MixUp or CutMix at random, apply it with `prob` (0.5 -> 25% / 25% / 50% none);
    the partner is the batch rolled by one and targets become soft one-hot, as in torchvision's implementation."""
    mixes = ([v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha > 0 else []) + \
            ([v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)] if cutmix_alpha > 0 else [])
    if not mixes or prob <= 0:
        return None
    return v2.RandomApply([v2.RandomChoice(mixes)], p=prob)
