"""The official data pipelines (../shared/reference/training.md): samplers (§7, §11), the v1 OpenCV classification
transforms (§6), use_coco_data masks (§9.3), SSD crop and the v1 photometric distortion (§10)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mobilevitv3.data import coco_voc
from mobilevitv3.data.cv_transforms import CvEvalTransform, rrc_params, short_side_size
from mobilevitv3.data.det_transforms import hue_shift, photometric_v1, ssd_crop, ssd_crop_window
from mobilevitv3.data.images import read_bgr
from mobilevitv3.data.sampler import MultiScaleBatchSampler, variable_batch_plan
from mobilevitv3.data.seg_transforms import class_ratio_crop, v2_eval_sizes


def _seq(sampler, epoch):
    sampler.set_epoch(epoch)
    return [(b[0][1], len(b), [i for i, _, _ in b]) for b in sampler]


# ---- §7 samplers ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bs0,n,expected", [
    (2, 1, [(160, 5), (192, 3), (256, 2), (288, 2), (320, 2)]),
    (32, 1, [(160, 81), (192, 56), (256, 32), (288, 32), (320, 32)]),
    (32, 8, [(160, 80), (192, 56), (256, 32), (288, 32), (320, 32)]),
    (64, 8, [(160, 160), (192, 112), (256, 64), (288, 64), (320, 64)]),
    (128, 1, [(160, 327), (192, 227), (256, 128), (288, 128), (320, 128)]),
    (128, 8, [(160, 328), (192, 224), (256, 128), (288, 128), (320, 128)])])
def test_variable_batch_plan_matches_official_table(bs0, n, expected):
    assert variable_batch_plan(256, bs0, num_replicas=n) == [(s, s, b) for s, b in expected]


def test_variable_sampler_reproduces_official_sequence_with_cumulative_shuffles():
    sampler = MultiScaleBatchSampler(18, variable_batch_plan(256, 2))
    assert _seq(sampler, 0) == [(256, 2, [11, 9]), (288, 2, [0, 16]), (192, 3, [2, 15, 10]), (320, 2, [3, 5]),
                                (256, 2, [17, 14]), (288, 2, [6, 7]), (192, 3, [8, 4, 1]), (288, 2, [13, 12])]
    assert _seq(sampler, 1) == [(192, 3, [14, 15, 13]), (160, 5, [12, 17, 11, 1, 4]), (320, 2, [16, 10]),
                                (160, 5, [6, 8, 7, 3, 9]), (160, 5, [5, 0, 2, 14, 15])]   # 14, 15: padding


def test_variable_sampler_batch_count_varies_per_epoch():
    sampler = MultiScaleBatchSampler(1000, variable_batch_plan(256, 64))
    counts = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        counts.append(len(sampler))
    assert counts == [10, 12, 11]


def test_variable_sampler_resume_replays_earlier_epochs():
    full = MultiScaleBatchSampler(18, variable_batch_plan(256, 2))
    _seq(full, 0)
    expected = _seq(full, 1)
    fresh = MultiScaleBatchSampler(18, variable_batch_plan(256, 2))
    fresh.set_epoch(1, start_step=2)                      # a new process resuming inside epoch 1
    assert [(b[0][1], len(b), [i for i, _, _ in b]) for b in fresh] == expected[2:]
    assert len(fresh) == len(expected) - 2


def test_variable_sampler_ddp_ranks_share_sizes_and_slice_one_order():
    plan = variable_batch_plan(256, 2, num_replicas=2)
    ranks = [MultiScaleBatchSampler(19, plan, num_replicas=2, rank=r) for r in (0, 1)]
    seqs = [_seq(s, 0) for s in ranks]
    assert [(h, b) for h, b, _ in seqs[0]] == [(h, b) for h, b, _ in seqs[1]]
    ids = [[i for _, _, batch in seq for i in batch] for seq in seqs]
    assert set(ids[0]) | set(ids[1]) == set(range(19))   # 19 padded to 20 with id 0


def test_v2_fixed_sampler_fresh_shuffle_and_short_last_batch():
    sampler = MultiScaleBatchSampler(18, [(256, 4)], kind="v2_fixed")
    assert [ids for _, _, ids in _seq(sampler, 0)] == [[11, 9, 0, 16], [2, 15, 10, 3], [5, 17, 14, 6],
                                                      [7, 8, 4, 1], [13, 12]]
    assert [i for _, _, ids in _seq(sampler, 1) for i in ids] == [10, 5, 16, 17, 9, 0, 15, 14, 3, 6, 11, 13, 12,
                                                                   7, 1, 8, 2, 4]


def test_v2_fixed_sampler_ddp_shards_before_shuffling():
    sampler = MultiScaleBatchSampler(10, [(256, 2)], kind="v2_fixed", num_replicas=2, rank=1)
    seen = [sorted({i for _, _, ids in _seq(sampler, e) for i in ids}) for e in range(3)]
    assert seen == [[1, 3, 5, 7, 9]] * 3                  # the same shard every epoch
    assert [len(ids) for _, _, ids in _seq(sampler, 0)] == [2, 2, 2]   # last batch padded from the rank's head


def test_v1_fixed_sampler_cumulative_order_short_last_batch():
    sampler = MultiScaleBatchSampler(18, [(512, 4)], kind="v1_fixed")
    assert [len(ids) for _, _, ids in _seq(sampler, 0)] == [4, 4, 4, 4, 2]
    assert [i for _, _, ids in _seq(sampler, 1) for i in ids] == [14, 15, 13, 12, 17, 11, 1, 4, 16, 10, 6, 8, 7,
                                                                   3, 9, 5, 0, 2]   # §11: seed(1) of seed(0)'s


# ---- §6 v1 OpenCV classification transforms --------------------------------------------------------------------

def test_cv_eval_transform_geometry_and_bgr(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    bgr = read_bgr(tmp_path / "x.png")
    assert np.array_equal(bgr, rgb[..., ::-1])
    assert short_side_size(375, 500, 288) == (288, 384)
    out = CvEvalTransform(288, 256)(bgr)
    expected = cv2.resize(bgr, (384, 288), interpolation=cv2.INTER_LINEAR)[16:272, 64:320]
    assert out.shape == (3, 256, 256)
    assert torch.equal(out, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)


def test_cv_eval_transform_does_not_antialias():
    rgb = np.random.default_rng(1).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    out = CvEvalTransform(288, None)(rgb)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    plain = F.interpolate(x, (288, 384), mode="bilinear", align_corners=False)[0] / 255
    smooth = F.interpolate(x, (288, 384), mode="bilinear", align_corners=False, antialias=True)[0] / 255
    assert (out - plain).abs().max() <= 1.5 / 255           # OpenCV's fixed-point rounding
    assert (out - smooth).abs().mean() > 10 * (out - plain).abs().mean()


def test_rrc_params_falls_back_to_ratio_clamped_centre():
    assert rrc_params(10, 1000, scale=(0.9, 1.0)) == (0, 493, 10, 13)


# ---- §9.3 use_coco_data ---------------------------------------------------------------------------------------

def _tiny_coco(root):
    (root / "annotations").mkdir(parents=True)
    (root / "train2017").mkdir()
    images = [{"id": 1, "file_name": "a.jpg", "height": 300, "width": 320},
              {"id": 2, "file_name": "b.jpg", "height": 200, "width": 320},     # under 256 px: left out
              {"id": 3, "file_name": "c.jpg", "height": 300, "width": 300}]     # only a non-VOC class: left out
    for im in images:
        Image.new("RGB", (im["width"], im["height"]), (90, 120, 150)).save(root / "train2017" / im["file_name"])
    square = lambda x0, y0, x1, y1: [[x0, y0, x1, y0, x1, y1, x0, y1]]  # noqa: E731
    anns = [{"id": 10, "image_id": 1, "category_id": 1, "segmentation": square(10, 10, 110, 110), "iscrowd": 0,
             "area": 1e4, "bbox": [10, 10, 100, 100]},                          # person -> 15
            {"id": 11, "image_id": 1, "category_id": 18, "segmentation": square(60, 60, 160, 160), "iscrowd": 0,
             "area": 1e4, "bbox": [60, 60, 100, 100]},                          # dog -> 12, overlaps the person
            {"id": 12, "image_id": 1, "category_id": 27, "segmentation": square(200, 200, 250, 250), "iscrowd": 0,
             "area": 2500, "bbox": [200, 200, 50, 50]},                         # backpack: not a VOC class
            {"id": 13, "image_id": 2, "category_id": 1, "segmentation": square(0, 0, 50, 50), "iscrowd": 0,
             "area": 2500, "bbox": [0, 0, 50, 50]},
            {"id": 14, "image_id": 3, "category_id": 27, "segmentation": square(0, 0, 50, 50), "iscrowd": 0,
             "area": 2500, "bbox": [0, 0, 50, 50]}]
    cats = [{"id": c, "name": str(c)} for c in (1, 18, 27)]
    (root / "annotations" / "instances_train2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))


def test_coco_voc_masks_match_hand_drawn_masks(tmp_path):
    _tiny_coco(tmp_path / "coco")
    pairs = coco_voc.coco_voc_pairs(tmp_path / "coco", tmp_path / "cache", threads=1)
    assert [(p.name, m.name) for p, m in pairs] == [("a.jpg", "a.png")]
    mask = np.array(Image.open(pairs[0][1]))
    expected = np.zeros((300, 320), np.uint8)
    # pycocotools rasterises a polygon x0..x1 as the pixel columns x0..x1-1
    expected[60:160, 60:160] = 12
    expected[10:110, 10:110] = 15                        # the person came first: it keeps the overlap
    assert np.array_equal(mask, expected)
    with Image.open(pairs[0][0]) as im:                  # re-saved JPEG, like the official coco_preprocess
        assert im.format == "JPEG" and im.size == (320, 300)
    assert (tmp_path / "cache" / coco_voc.LIST_FILE).is_file()
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_coco_voc_pairs_reads_an_existing_list(tmp_path):
    _tiny_coco(tmp_path / "coco")
    coco_voc.coco_voc_pairs(tmp_path / "coco", tmp_path / "cache", threads=1)
    pairs = coco_voc.coco_voc_pairs(tmp_path / "cache")  # an official coco_preprocess folder as --data
    assert [(p.name, m.name) for p, m in pairs] == [("a.jpg", "a.png")] and pairs[0][0].is_file()


# ---- §10 detection augmentation -------------------------------------------------------------------------------

def _seed_with_first_option(option: int) -> int:
    for seed in range(1000):
        torch.manual_seed(seed)
        if int(torch.randint(7, ())) == option:
            return seed
    raise AssertionError


def test_ssd_crop_option_zero_returns_input_unchanged():
    image, boxes, labels = torch.rand(3, 240, 320), torch.tensor([[10.0, 20, 200, 180]]), torch.tensor([3])
    torch.manual_seed(_seed_with_first_option(0))
    out = ssd_crop(image, boxes, labels, family="v1")
    assert out[0] is image and out[1] is boxes and out[2] is labels


def test_ssd_crop_v2_windows_have_sides_of_100_px_and_v1_may_not():
    boxes = torch.tensor([[60.0, 60, 140, 140]])
    torch.manual_seed(0)
    sides = {f: [] for f in ("v1", "v2")}
    for family in sides:
        for _ in range(150):
            rect = ssd_crop_window(boxes, 200, 200, family=family)
            if rect is not None:
                sides[family].append(min(rect[2] - rect[0], rect[3] - rect[1]).item())
    assert min(sides["v2"]) >= 100 and min(sides["v1"]) < 100


def test_ssd_crop_keeps_centred_boxes_clipped_and_shifted():
    torch.manual_seed(_seed_with_first_option(1))        # t = 0.1: a real crop
    image = torch.rand(3, 300, 400)
    boxes, labels = torch.tensor([[50.0, 50, 350, 250], [0, 0, 10, 10]]), torch.tensor([1, 2])
    out, kept, kept_labels = ssd_crop(image, boxes, labels, family="v1")
    assert len(kept) >= 1 and (kept >= 0).all()
    assert (kept[:, 2] <= out.shape[-1]).all() and (kept[:, 3] <= out.shape[-2]).all()


def test_photometric_v1_hue_shift_is_an_integer_in_opencv_units():
    torch.manual_seed(0)
    shifts = {hue_shift() for _ in range(5000)}
    assert shifts <= set(range(-12, 13)) and {-12, 12} <= shifts


def test_opencv_hsv_to_bgr_wraps_hue_over_179():
    hsv = np.array([[[185, 200, 200]], [[5, 200, 200]]], dtype=np.uint8)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    assert np.array_equal(bgr[0], bgr[1])


def test_photometric_v1_keeps_uint8_bgr_shape():
    torch.manual_seed(0)
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    outs = [photometric_v1(image) for _ in range(20)]
    assert all(o.shape == image.shape and o.dtype == np.uint8 for o in outs)
    assert any(not np.array_equal(o, image) for o in outs)


@pytest.mark.parametrize("per_image", [False, True])
def test_ssd_postprocess_caps_200_per_class_v1_and_per_image_v2(per_image):
    from dataclasses import replace

    from mobilevitv3 import create_model
    model = create_model("ssdlite_mobilevitv3_xxs.coco").eval()
    model.head_cfg = replace(model.head_cfg, nms_iou=1.0, per_image_limit=per_image)   # NMS keeps every anchor box
    a = model.anchors(320, 320).shape[0]
    logits = torch.zeros(1, a, 81)
    logits[..., 1:3] = 10.0                                  # classes 1 and 2 score ~0.5 on every anchor
    out = model.postprocess(logits, torch.zeros(1, a, 4), [(320, 320)], (320, 320))[0]
    counts = torch.bincount(out["labels"], minlength=3)
    if per_image:
        assert len(out["labels"]) == 200
    else:
        assert counts[1] == 200 and counts[2] == 200


# ---- §9 segmentation ------------------------------------------------------------------------------------------

def test_v2_eval_sizes_keep_aspect_then_floor_to_stride():
    assert v2_eval_sizes(375, 500, short=512, stride=16) == ((512, 682), (512, 672))


def test_class_ratio_crop_counts_ade20k_other_as_a_class():
    mask = torch.zeros(64, 64, dtype=torch.uint8)        # ADE20K stored 0 = "other" everywhere ...
    mask[:, 40:] = 5                                     # ... but one class on the right
    torch.manual_seed(0)
    for _ in range(20):
        top, left = class_ratio_crop(mask, (32, 32))
        window = mask[top:top + 32, left:left + 32]
        share = max(int((window == 0).sum()), int((window == 5).sum())) / window.numel()
        assert share < 0.75                              # "other" is counted, so an all-"other" window is redrawn


def test_class_ratio_crop_keeps_window_without_valid_pixels():
    mask = torch.full((64, 64), 255, dtype=torch.uint8)
    mask[:8, :8] = 1
    torch.manual_seed(1)
    first = (int(torch.randint(33, ())), int(torch.randint(33, ())))
    torch.manual_seed(1)
    if not (first[0] < 8 and first[1] < 8):              # the first window sees only 255: re-checked, never redrawn
        assert class_ratio_crop(mask, (32, 32)) == first


def test_official_det_transform_v1_uncropped_is_opencv_resize_in_bgr():
    from torchvision import tv_tensors

    from mobilevitv3.data.det_transforms import DetTrainTransform
    rgb = torch.randint(0, 256, (3, 240, 300), dtype=torch.uint8)
    target = {"boxes": tv_tensors.BoundingBoxes(torch.tensor([[30.0, 24, 150, 120]]), format="XYXY",
                                                canvas_size=(240, 300)), "labels": torch.tensor([7])}
    torch.manual_seed(_seed_with_first_option(0))        # no crop
    x, out = DetTrainTransform("v1", hflip=0.0, photometric=0.0)(tv_tensors.Image(rgb), target, (320, 320))
    bgr = np.ascontiguousarray(rgb.permute(1, 2, 0).numpy()[..., ::-1])
    expected = cv2.resize(bgr, (320, 320), interpolation=cv2.INTER_LINEAR)
    assert torch.equal(x, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)
    assert torch.allclose(out["boxes"].as_subclass(torch.Tensor), torch.tensor([[32.0, 32, 160, 160]]))


def test_pil_seg_eval_transform_v2_protocol_sizes():
    from mobilevitv3.data.seg_transforms import PilSegEvalTransform
    image, mask = torch.randint(0, 256, (3, 375, 500), dtype=torch.uint8), torch.zeros(375, 500, dtype=torch.uint8)
    x, m = PilSegEvalTransform((512, 512), stride=16)(image, mask)
    assert x.shape == (3, 512, 672) and m.shape == (375, 500)     # the logits go back to 375 x 500
    x, m = PilSegEvalTransform((512, 512), resize_mask=True)(image, mask)
    assert x.shape == (3, 512, 512) and m.shape == (512, 512)     # training-time validation scores at 512 x 512


def test_voc_training_set_with_coco_root_appends_coco_pairs(tmp_path):
    from dense_data import make_voc
    from mobilevitv3 import create_model
    from mobilevitv3.tasks import get_task
    from mobilevitv3.train.config import TrainConfig
    data = make_voc(tmp_path / "voc", n_train=3, n_val=1)
    _tiny_coco(tmp_path / "coco")
    cfg = TrainConfig(model="deeplabv3_mobilevitv3_xxs.voc", data=str(data), coco_root=str(tmp_path / "coco"),
                      coco_cache=str(tmp_path / "cache"), image_size=64)
    train_set, _ = get_task("segmentation").build_datasets(cfg, create_model(cfg.model))
    assert len(train_set) == 3 + 1 and train_set.pairs[-1][1].name == "a.png"
    image, mask = train_set[(3, 64, 64)]
    assert image.shape == (3, 64, 64) and set(mask.unique().tolist()) <= {0, 12, 15, 255}   # 255: rotation fill


def test_classification_eval_v1_is_opencv_and_v2_is_pil_with_floor_crop(tmp_path):
    from mobilevitv3 import create_model
    from mobilevitv3.data.classification import image_folder
    from mobilevitv3.data.transforms import pipeline
    from mobilevitv3.train.config import TrainConfig
    rgb = np.random.default_rng(2).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    for split in ("train", "val"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.fromarray(rgb).save(tmp_path / split / "a" / "x.png")
    for name in ("mobilevitv3_xxs.in1k", "mobilevitv3_050.in1k"):
        model = create_model(name)
        _, val = image_folder(str(tmp_path), pipeline(TrainConfig(model=name), model), image_size=256)
        x = val[0][0]
        if name.endswith("xxs.in1k"):   # BGR, OpenCV bilinear, rows 16..271 / cols 64..319
            ref = cv2.resize(rgb[..., ::-1], (384, 288), interpolation=cv2.INTER_LINEAR)[16:272, 64:320]
        else:                           # RGB, PIL bicubic on the image itself, the same floor crop
            ref = np.asarray(Image.fromarray(rgb).resize((384, 288), Image.BICUBIC))[16:272, 64:320]
        pixels = (x * 255).round().to(torch.uint8)            # the same uint8 pixels (x / 255 rounds either way)
        assert torch.equal(pixels, torch.from_numpy(np.ascontiguousarray(ref)).permute(2, 0, 1))


def test_coco_v1_boxes_are_not_clipped_v2_are(tmp_path):
    from dense_data import make_coco, read_coco_json, write_coco_json
    from mobilevitv3.data.coco import CocoBoxes
    root = make_coco(tmp_path)
    ann = root / "annotations" / "instances_train2017.json"
    d = read_coco_json(ann)
    first = d["annotations"][0]
    width = next(im["width"] for im in d["images"] if im["id"] == first["image_id"])
    first["bbox"] = [width - 5.0, 1.0, 20.0, 10.0]              # 15 px outside the right edge
    write_coco_json(ann, d["images"], d["annotations"], d["categories"])
    for clip, right in ((False, width + 15.0), (True, float(width))):
        boxes, _ = CocoBoxes(root, "train", train=True, clip=clip).targets[first["image_id"]]
        assert right in boxes[:, 2].tolist()


@pytest.mark.parametrize("sampler,family,kind", [("variable_batch", "v1", "variable"), ("fixed", "v1", "v1_fixed"),
                                                 ("fixed", "v2", "v2_fixed"), ("v2_fixed", "v1", "v2_fixed")])
def test_sampler_kind_follows_recipe_and_family(sampler, family, kind):
    from mobilevitv3.data.sampler import sampler_kind
    assert sampler_kind(sampler, family) == kind
