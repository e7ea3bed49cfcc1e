"""PASCAL VOC / ADE20K / COCO readers in their published layouts, the joint augmentations, and every bad input
(out-of-range labels, size mismatches, missing files, degenerate boxes, images without boxes)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from dense_data import make_ade20k, make_coco, make_voc, read_coco_json, write_coco_json
from mobilevitv3.data.ade20k import ade20k_segmentation
from mobilevitv3.data.coco import CocoBoxes
from mobilevitv3.data.det_transforms import DetTrainTransform, OfficialDetEvalTransform
from mobilevitv3.data.masks import DatasetError
from mobilevitv3.data.seg_transforms import SegAugment, SegTrainTransform, official_eval_transform, to_model_input
from mobilevitv3.data.voc import voc_segmentation
from mobilevitv3.errors import UserError
from mobilevitv3.tasks import get_task

VOC_DIR = "VOCdevkit/VOC2012"


# ---- segmentation data sets ------------------------------------------------------------------------------------
def test_voc_reads_palette_masks_with_boundary_ignored(tmp_path):
    ds = voc_segmentation(make_voc(tmp_path), "val")
    image, target = ds[0]
    assert len(ds) == 3 and image.dtype == torch.uint8 and image.shape[0] == 3
    assert target.dtype == torch.int64 and target.shape == image.shape[-2:]
    assert set(target.unique().tolist()) <= {0, 1, 2, 3, 255} and (target[0] == 255).all()


@pytest.mark.parametrize("data_arg", ["", "VOCdevkit", VOC_DIR])
def test_voc_root_found_from_any_level(tmp_path, data_arg):
    make_voc(tmp_path)
    assert len(voc_segmentation(tmp_path / data_arg, "train")) == 4


def test_voc_train_uses_sbd_train_aug_when_installed(tmp_path):
    voc = make_voc(tmp_path) / VOC_DIR
    (voc / "SegmentationClassAug").mkdir()
    ids = [p.stem for p in sorted((voc / "JPEGImages").glob("*.jpg"))]
    for i in ids:   # SBD masks are grayscale label PNGs
        Image.fromarray(np.array(Image.open(voc / "SegmentationClass" / f"{i}.png"))).save(
            voc / "SegmentationClassAug" / f"{i}.png")
    (voc / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(ids))
    ds = voc_segmentation(tmp_path, "train")
    assert len(ds) == 7 and all(m.parent.name == "SegmentationClassAug" for _, m in ds.pairs)


def test_ade20k_targets_are_mask_minus_one(tmp_path):
    ds = ade20k_segmentation(make_ade20k(tmp_path), "val")
    raw = np.array(Image.open(ds.pairs[0][1]))
    _, target = ds[0]
    assert torch.equal(target, torch.from_numpy(raw).long() - 1)
    assert target.min() == -1 and target.max() == 149       # "other" -> ignore -1; class 150 -> 149


@pytest.mark.parametrize("kind, bad_value", [("voc", 21), ("voc", 200), ("ade20k", 151)])
def test_mask_label_outside_classes_is_an_error_naming_the_file(tmp_path, kind, bad_value):
    if kind == "voc":
        ds = voc_segmentation(make_voc(tmp_path), "val")
    else:
        ds = ade20k_segmentation(make_ade20k(tmp_path), "val")
    mask_path = ds.pairs[1][1]
    with Image.open(mask_path) as im:
        arr, mode, pal = np.array(im), im.mode, im.getpalette()
    arr[5, 5] = bad_value
    out = Image.fromarray(arr, mode=mode)
    if pal:
        out.putpalette(pal)
    out.save(mask_path)
    ds[0]
    with pytest.raises(DatasetError, match=rf"{mask_path.name}.*\[{bad_value}\]"):
        ds[1]


def test_bad_mask_in_a_dataloader_worker_is_still_one_line(tmp_path):
    ds = voc_segmentation(make_voc(tmp_path), "val")
    Image.fromarray(np.full((60, 80), 99, np.uint8), mode="L").save(ds.pairs[0][1])
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=1, collate_fn=get_task("segmentation").collate)
    with pytest.raises(DatasetError) as err:
        next(iter(loader))
    assert "\n" not in str(err.value) and str(err.value).startswith(str(ds.pairs[0][1]))


def test_mask_and_image_size_mismatch_is_an_error_naming_both(tmp_path):
    ds = voc_segmentation(make_voc(tmp_path), "val")
    image_path, mask_path = ds.pairs[0]
    Image.open(image_path).resize((40, 30)).save(image_path)
    with pytest.raises(DatasetError, match=rf"{mask_path.name}.*{image_path.name}"):
        ds[0]


def test_colour_coded_mask_is_rejected(tmp_path):
    ds = voc_segmentation(make_voc(tmp_path), "val")
    Image.open(ds.pairs[0][1]).convert("RGB").save(ds.pairs[0][1])
    with pytest.raises(DatasetError, match="mode RGB"):
        ds[0]


def test_listed_file_missing_is_an_error_naming_it(tmp_path):
    voc = make_voc(tmp_path) / VOC_DIR
    (voc / "SegmentationClass" / "2007_val_001.png").unlink()
    with pytest.raises(DatasetError, match="1 listed file.*2007_val_001.png"):
        voc_segmentation(tmp_path, "val")


def test_unreadable_image_is_skipped_and_counted_by_collate(tmp_path):
    ds = voc_segmentation(make_voc(tmp_path), "val")
    ds.pairs[0][0].write_bytes(b"not a jpeg")
    assert ds[0] is None
    batch = get_task("segmentation").collate([ds[0], ds[1], ds[2]])
    assert batch["skipped"] == 1 and len(batch["masks"]) == 2


def test_wrong_layout_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="not a PASCAL VOC 2012 folder"):
        voc_segmentation(tmp_path, "val")


# ---- segmentation transforms -----------------------------------------------------------------------------------
def _pair(h=60, w=80, labels=(0, 1, 2)):
    mask = torch.tensor(labels, dtype=torch.uint8).repeat_interleave(w // len(labels) + 1)[:w].expand(h, w)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    return tv_tensors.Image(image), tv_tensors.Mask(mask.clone())


def test_seg_train_transform_gives_the_crop_and_only_existing_labels():
    torch.manual_seed(0)
    t = SegTrainTransform(SegAugment(short_side=(40, 60), max_long_side=100), ignore=255, hflip=0.5,
                          interpolation="bicubic", channel_order="rgb")
    for _ in range(5):
        image, mask = t(*_pair(), (64, 64))
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
        assert mask.shape == (64, 64) and set(mask.unique().tolist()) <= {0, 1, 2, 255}


def test_seg_crop_pads_small_images_with_the_ignore_value():
    aug = SegAugment(short_side=(30, 30), max_long_side=None, blur=0, photometric=0, rotate=0)
    _, mask = SegTrainTransform(aug, ignore=255, hflip=0, interpolation="bilinear", channel_order="rgb")(
        *_pair(), (64, 64))
    assert (mask == 255).any() and set(mask.unique().tolist()) <= {0, 1, 2, 255}


def test_seg_v1_crop_enlarges_small_images_instead_of_padding():
    aug = SegAugment(short_side=(30, 30), max_long_side=None, pad_crop=False, cat_max_ratio=1.0, blur=0,
                     photometric=0, rotate=0)
    _, mask = SegTrainTransform(aug, ignore=255, hflip=0, interpolation="bilinear", channel_order="bgr")(
        *_pair(), (64, 64))
    assert mask.shape == (64, 64) and not (mask == 255).any()


@pytest.mark.parametrize("family, shape", [("v1", (3, 512, 512)), ("v2", (3, 512, 672))])
def test_seg_eval_transform_resizes_the_image_only(family, shape):
    """v1: exactly 512x512; v2: the shorter side to 512, floored to the output stride (60x80 -> 512x682 -> 672)."""
    transform = official_eval_transform(family, (512, 512), stride=32, validation=False, channel_order="rgb")
    image, mask = transform(*_pair())
    assert image.shape == shape and mask.shape == (60, 80)


def test_bgr_order_flips_channels():
    image = tv_tensors.Image(torch.tensor([10, 20, 30], dtype=torch.uint8).view(3, 1, 1))
    assert to_model_input(image, channel_order="bgr").flatten().mul(255).round().tolist() == [30, 20, 10]


def test_unknown_augmentation_option_names_the_close_match():
    with pytest.raises(UserError, match="did you mean rotate"):
        SegAugment.from_options({"rotat": 5})


# ---- COCO ------------------------------------------------------------------------------------------------------
def test_coco_category_ids_map_to_contiguous_labels(tmp_path):
    ds = CocoBoxes(make_coco(tmp_path), "val")
    assert ds.category_ids == [1, 3, 18] and ds.class_names == ["background", "person", "car", "dog"]
    coco_labels = {a["image_id"]: sorted(ds.label_of[a["category_id"]] for a in ds.coco.imgToAnns[a["image_id"]])
                   for a in ds.coco.anns.values()}
    for i in range(len(ds)):
        _, target = ds[i]
        assert sorted(target["labels"].tolist()) == coco_labels[target["image_id"]]
        assert target["orig_size"] == (96, 128) and target["boxes"].shape[1] == 4


def _edit_val_json(root, edit):
    path = root / "annotations" / "instances_val2017.json"
    d = read_coco_json(path)
    edit(d)
    write_coco_json(path, d["images"], d["annotations"], d["categories"])


def test_coco_missing_image_file_is_an_error_naming_it(tmp_path):
    root = make_coco(tmp_path)
    (root / "val2017" / "000000001002.jpg").unlink()
    with pytest.raises(DatasetError, match="1 listed image file.*000000001002.jpg"):
        CocoBoxes(root, "val")


def test_coco_degenerate_and_outside_boxes_are_skipped_and_counted(tmp_path):
    root = make_coco(tmp_path)

    def edit(d):
        first = d["images"][0]["id"]
        extra = [[10, 10, 0, 20], [10, 10, 20, 0], [500, 500, 30, 30], [-50, 5, 30, 30], [120, 80, 30, 30]]
        d["annotations"] += [{"id": 900 + i, "image_id": first, "category_id": 3, "bbox": b, "area": 1, "iscrowd": 0}
                             for i, b in enumerate(extra)]
    _edit_val_json(root, edit)
    ds = CocoBoxes(root, "val")
    assert ds.skipped["degenerate_boxes"] == 4 and ds.skipped["clipped_boxes"] == 1
    _, target = ds[0]
    boxes = target["boxes"]   # resize-free: no transform
    assert ((boxes[:, 2:] - boxes[:, :2]) >= 1).all()
    assert (boxes[:, 0::2] <= 128).all() and (boxes[:, 1::2] <= 96).all() and (boxes >= 0).all()
    assert any(torch.equal(b, torch.tensor([120.0, 80.0, 128.0, 96.0])) for b in boxes)


def test_coco_training_keeps_crowd_only_images_and_drops_unannotated_ones(tmp_path):
    # official (training.md §10.1): the training ids are pycocotools' imgToAnns keys
    root = make_coco(tmp_path)
    train_json = root / "annotations" / "instances_train2017.json"
    d = read_coco_json(train_json)
    crowd, bare = d["images"][0]["id"], d["images"][1]["id"]
    d["annotations"] = [{**a, "iscrowd": 1} if a["image_id"] == crowd else a for a in d["annotations"]
                        if a["image_id"] != bare]
    write_coco_json(train_json, d["images"], d["annotations"], d["categories"])
    train = CocoBoxes(root, "train", train=True)
    assert crowd in train.ids and bare not in train.ids and train.skipped["images_without_boxes"] == 1
    assert len(train[train.ids.index(crowd)][1]["labels"]) == 0 and train.skipped["crowd_boxes"] == 2
    val_like = CocoBoxes(root, "train", train=False)
    assert bare in val_like.ids and len(val_like[val_like.ids.index(bare)][1]["labels"]) == 0


def test_coco_unknown_category_is_an_error(tmp_path):
    root = make_coco(tmp_path)
    _edit_val_json(root, lambda d: d["annotations"][0].update(category_id=77))
    with pytest.raises(DatasetError, match="category_id 77"):
        CocoBoxes(root, "val")


def test_det_train_transform_keeps_valid_boxes_inside_the_input(tmp_path):
    torch.manual_seed(0)
    t = DetTrainTransform("v2", hflip=0.5, flip_channels=True)
    ds = CocoBoxes(make_coco(tmp_path), "train", transform=t, train=True)
    for i in range(len(ds)):
        image, target = ds[(i, 320, 320)]
        boxes = target["boxes"]
        assert image.shape == (3, 320, 320) and len(boxes) == len(target["labels"])
        assert (boxes >= 0).all() and (boxes <= 320).all() and ((boxes[:, 2:] - boxes[:, :2]) >= 1).all()


def test_det_eval_transform_scales_boxes_with_the_image(tmp_path):
    ds = CocoBoxes(make_coco(tmp_path), "val")
    raw = ds[0][1]["boxes"]
    ds.box_transform = OfficialDetEvalTransform("v2", (320, 320))
    image, target = ds[0]
    assert image.shape == (3, 320, 320)
    torch.testing.assert_close(target["boxes"], raw * torch.tensor([320 / 128, 320 / 96] * 2))
