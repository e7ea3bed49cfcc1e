"""mIoU (dataset-wide confusion matrix, ignore values) and COCO mAP through pycocotools, on known answers."""
from __future__ import annotations

import pytest
import torch

from dense_data import make_coco
from mobilevitv3.data.coco import CocoBoxes
from mobilevitv3.tasks.metrics import ConfusionMatrix, coco_map, coco_results


def test_miou_of_a_perfect_prediction_is_one():
    target = torch.randint(0, 5, (2, 16, 16))
    cm = ConfusionMatrix(21)
    cm.update(target, target)
    assert cm.compute()["miou"] == 1.0 and cm.compute()["pixel_acc"] == 1.0


def test_miou_of_an_all_wrong_prediction_is_zero():
    target = torch.randint(0, 5, (16, 16))
    cm = ConfusionMatrix(6)
    cm.update((target + 1) % 6, target)
    assert cm.compute()["miou"] == 0.0


@pytest.mark.parametrize("ignore", [255, -1])
def test_ignored_pixels_never_count(ignore):
    target = torch.tensor([[0, 1], [ignore, ignore]])
    prediction = torch.tensor([[0, 1], [1, 0]])
    cm = ConfusionMatrix(2)
    cm.update(prediction, target)
    assert cm.matrix.sum() == 2 and cm.compute()["miou"] == 1.0


def test_miou_known_answer_accumulates_over_the_dataset():
    cm = ConfusionMatrix(3, device="cpu")
    cm.update(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]))   # image 1
    cm.update(torch.tensor([2, 2]), torch.tensor([2, 0]))               # image 2
    # class 0: TP 1, FP 1, FN 1 -> 1/3; class 1: TP 2, FN 1 -> 2/3; class 2: TP 1, FP 1 -> 1/2
    iou = cm.iou()
    torch.testing.assert_close(iou, torch.tensor([1 / 3, 2 / 3, 1 / 2], dtype=torch.float64))
    out = cm.compute(["bg", "a", "b"])
    assert out["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3) and out["iou/a"] == pytest.approx(2 / 3)


def test_classes_absent_from_targets_and_predictions_are_left_out():
    cm = ConfusionMatrix(21)
    cm.update(torch.tensor([0, 3]), torch.tensor([0, 3]))
    out = cm.compute()
    assert out["miou"] == 1.0 and set(k for k in out if k.startswith("iou/")) == {"iou/0", "iou/3"}


@pytest.fixture(scope="module")
def coco_val(tmp_path_factory):
    return CocoBoxes(make_coco(tmp_path_factory.mktemp("coco")), "val")


def _ground_truth_as_detections(ds, shift=None):
    dets, ids = [], []
    for i in range(len(ds)):
        _, t = ds[i]
        boxes = t["boxes"].clone()
        if shift is not None:
            boxes = shift(boxes)
        dets.append({"boxes": boxes, "scores": torch.ones(len(boxes)), "labels": t["labels"]})
        ids.append(t["image_id"])
    return dets, ids


def test_coco_results_use_original_category_ids_and_xywh(coco_val):
    det = {"boxes": torch.tensor([[10.0, 20.0, 40.0, 60.0]]), "scores": torch.tensor([0.9]),
           "labels": torch.tensor([3])}
    (entry,) = coco_results([det], [1001], coco_val.category_ids)
    assert entry == {"image_id": 1001, "category_id": 18, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.9}


def test_map_of_the_ground_truth_itself_is_one(coco_val):
    dets, ids = _ground_truth_as_detections(coco_val)
    out = coco_map(coco_val.coco, coco_results(dets, ids, coco_val.category_ids), ids)
    assert out["map"] == pytest.approx(1.0) and out["map50"] == pytest.approx(1.0)
    assert out["map75"] == pytest.approx(1.0)


def test_map_of_no_detections_is_zero(coco_val):
    assert coco_map(coco_val.coco, [], coco_val.ids) == {k: 0.0 for k in ("map", "map50", "map75", "map_small",
                                                                          "map_medium", "map_large")}


def test_map_known_answer_for_boxes_at_iou_072(coco_val):
    def shrink(b):   # keep x1, y1, x2; height x 0.72 -> IoU 0.72 with the ground truth
        b[:, 3] = b[:, 1] + (b[:, 3] - b[:, 1]) * 0.72
        return b
    dets, ids = _ground_truth_as_detections(coco_val, shrink)
    out = coco_map(coco_val.coco, coco_results(dets, ids, coco_val.category_ids), ids)
    # true positive at IoU thresholds 0.50 ... 0.70 (5 of 10): AP 0.5; AP50 1; AP75 0
    assert out["map"] == pytest.approx(0.5, abs=1e-3) and out["map50"] == pytest.approx(1.0)
    assert out["map75"] == pytest.approx(0.0)


def test_map_of_the_wrong_category_is_zero(coco_val):
    dets, ids = _ground_truth_as_detections(coco_val)
    for d in dets:
        d["labels"] = d["labels"] % 3 + 1
    out = coco_map(coco_val.coco, coco_results(dets, ids, coco_val.category_ids), ids)
    assert out["map"] == pytest.approx(0.0)
