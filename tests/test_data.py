"""Classification data: the multi-scale sampler (official sizes, determinism, DDP partition, resume), transforms
from the tag, and bad input (each a clear message, or skipped and counted)."""
from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image

from mobilevitv3 import create_model
from mobilevitv3.data.classification import digits, image_folder
from mobilevitv3.data.images import try_read_rgb
from mobilevitv3.data.sampler import MultiScaleBatchSampler, scale_plan
from mobilevitv3.data.transforms import eval_transform, pipeline
from mobilevitv3.errors import UserError
from mobilevitv3.layers import make_divisible
from mobilevitv3.tasks import get_task
from mobilevitv3.train.config import TrainConfig


def _plan(bs: int, replicas: int = 1) -> list[tuple[int, int]]:
    return scale_plan(256, bs, min_size=160, max_size=320, scales=5, check_scale=32, num_replicas=replicas)


@pytest.mark.parametrize("bs, replicas, expected", [
    (32, 1, [(160, 81), (192, 56), (256, 32), (288, 32), (320, 32)]),
    (64, 1, [(160, 163), (192, 113), (256, 64), (288, 64), (320, 64)]),
    (64, 8, [(160, 160), (192, 112), (256, 64), (288, 64), (320, 64)]),
])
def test_scale_plan_matches_official_sizes_and_batches(bs, replicas, expected):
    assert _plan(bs, replicas) == expected


def test_make_divisible_never_drops_below_ninety_percent():
    assert make_divisible(200, 32) == 192 and make_divisible(240, 32) == 256 and make_divisible(10, 8) == 16


def test_sampler_is_deterministic_per_epoch_and_reshuffles_between_epochs():
    a, b = (MultiScaleBatchSampler(500, _plan(8), seed=3) for _ in range(2))
    a.set_epoch(4), b.set_epoch(4)
    assert list(a) == list(b)
    b.set_epoch(5)
    assert list(a) != list(b)


@pytest.mark.parametrize("n", [300, 301])
def test_sampler_ddp_ranks_get_disjoint_indices_and_equal_steps(n):
    world = 3
    ranks = [MultiScaleBatchSampler(n, _plan(8, world), num_replicas=world, rank=r, seed=1) for r in range(world)]
    for s in ranks:
        s.set_epoch(2)
    batches = [list(s) for s in ranks]
    assert len({len(b) for b in batches}) == 1                        # same number of steps on every rank
    for step in zip(*batches):                                         # same (size, batch) at each step
        assert len({(len(b), b[0][1], b[0][2]) for b in step}) == 1
        assert all(len({(h, w) for _, h, w in b}) == 1 for b in step)
    seen = [{i for b in rb for i, _, _ in b} for rb in batches]
    overlap = sum(len(seen[i] & seen[j]) for i in range(world) for j in range(i + 1, world))
    assert overlap <= -(-n // world) * world - n                       # only the padding repeats across ranks
    assert set().union(*seen) == set(range(n))                         # together the ranks cover the data set


def test_sampler_resumes_mid_epoch_with_the_remaining_batches():
    full = MultiScaleBatchSampler(200, _plan(8), seed=0)
    full.set_epoch(1)
    whole = list(full)
    resumed = MultiScaleBatchSampler(200, _plan(8), seed=0)
    resumed.set_epoch(1, start_step=3)
    assert list(resumed) == whole[3:] and len(resumed) == len(whole) - 3


def test_digits_split_is_fixed_and_real():
    pipe = pipeline(TrainConfig(), create_model("mobilevitv3_xxs", num_classes=10))
    train, val = digits(pipe, image_size=32)
    assert (len(train), len(val), train.num_classes) == (1437, 360, 10)
    x, label, bad = train[(0, 32, 32)]
    assert x.shape == (3, 32, 32) and 0 <= label < 10 and bad == 0
    _, val2 = digits(pipe, image_size=32)
    assert torch.equal(val.items[1], val2.items[1])


def test_v1_in1k_eval_transform_is_bgr_288_256():
    model = create_model("mobilevitv3_xxs.in1k")
    p = pipeline(TrainConfig(model="mobilevitv3_xxs.in1k"), model)
    assert (p.channel_order, p.eval_resize, p.eval_crop, p.interpolation) == ("bgr", 288, 256, "bilinear")
    red = Image.new("RGB", (300, 400), (255, 0, 0))
    x = eval_transform(p)(red)
    assert x.shape == (3, 256, 256) and x[2].min() == 1 and x[0].max() == 0     # red lands in channel 2 (BGR)


def _folder(root, classes=("a", "b"), n=3, size=(20, 20)):
    for split in ("train", "val"):
        for i, c in enumerate(classes):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                Image.new("RGB", size, (200 * i, 50, 30 * k)).save(root / split / c / f"{k}.png")
    return root


def test_image_folder_converts_modes_and_accepts_images_smaller_than_the_crop(tmp_path):
    root = _folder(tmp_path, size=(7, 5))
    for mode, name in (("L", "gray.png"), ("RGBA", "rgba.png"), ("CMYK", "cmyk.jpg"), ("P", "pal.png")):
        Image.new(mode, (9, 9)).save(root / "train" / "a" / name)
    pipe = pipeline(TrainConfig(image_size=32), create_model("mobilevitv3_xxs", num_classes=2))
    train, val = image_folder(str(root), pipe, image_size=32)
    shapes = {train[(i, 32, 32)][0].shape for i in range(len(train))} | {val[i][0].shape for i in range(len(val))}
    assert shapes == {torch.Size([3, 32, 32])} and len(train) == 10
    assert try_read_rgb(root / "train" / "a" / "cmyk.jpg").mode == "RGB"


def test_unreadable_and_truncated_images_are_skipped_and_counted(tmp_path, caplog):
    root = _folder(tmp_path)
    (root / "val" / "a" / "junk.jpg").write_bytes(b"not an image")
    good = (root / "val" / "b" / "0.png").read_bytes()
    (root / "val" / "b" / "cut.png").write_bytes(good[: len(good) // 2])
    (root / "train" / "a" / "junk.jpg").write_bytes(b"\xff\xd8 nope")
    model = create_model("mobilevitv3_xxs", num_classes=2)
    train, val = image_folder(str(root), pipeline(TrainConfig(image_size=32), model), image_size=32)
    task = get_task("classification")
    with caplog.at_level(logging.WARNING):
        images, targets, skipped = task.collate([val[i] for i in range(len(val))])
        t_images, _, t_skipped = task.collate([train[(i, 32, 32)] for i in range(len(train))])
    assert (len(images), skipped) == (6, 2) and "junk.jpg" in caplog.text and "skipping" in caplog.text
    assert len(t_images) == len(train) and t_skipped == 1      # training substitutes: the batch keeps its size


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "data directory not found"),
    (lambda p: p, "expected a train/ folder"),
    (lambda p: (p / "train").mkdir() or (p / "val").mkdir() or p, "no class folders"),
    (lambda p: [(p / s / "a").mkdir(parents=True) for s in ("train", "val")] and p, "no images found"),
])
def test_bad_data_dirs_are_one_clear_error(tmp_path, make, message):
    pipe = pipeline(TrainConfig(), create_model("mobilevitv3_xxs", num_classes=2))
    with pytest.raises(UserError, match=message):
        image_folder(str(make(tmp_path)), pipe, image_size=32)


def test_empty_class_folder_is_kept_with_a_warning(tmp_path, caplog):
    root = _folder(tmp_path)
    (root / "train" / "c_empty").mkdir()
    pipe = pipeline(TrainConfig(), create_model("mobilevitv3_xxs", num_classes=3))
    with caplog.at_level(logging.WARNING):
        train, _ = image_folder(str(root), pipe, image_size=32)
    assert train.classes == ["a", "b", "c_empty"] and "without images" in caplog.text
