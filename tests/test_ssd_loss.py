"""SSD anchors (against the official fixture), box coding, prior matching and the multibox loss."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchvision.ops import box_convert

from mobilevitv3 import create_model
from mobilevitv3.models.ssd_loss import hard_negatives, match, multibox_loss, ssd_targets

FIXTURE = "ssdlite_mobilevitv3_050.coco.json"


def _fixture() -> dict:
    for folder in (Path(__file__).parent / "fixtures", Path("/work/shared/reference/fixtures")):
        if (folder / FIXTURE).is_file():
            return json.loads((folder / FIXTURE).read_text())
    pytest.skip(f"{FIXTURE} not available")


@pytest.fixture(scope="module")
def ssd():
    return create_model("ssdlite_mobilevitv3_050.coco")


def test_anchors_equal_the_official_fixture(ssd):
    expected = torch.tensor(_fixture()["anchors"][0]["values"]).reshape(-1, 4)   # first input: 320x320
    torch.testing.assert_close(ssd.anchors(320, 320), expected, rtol=0, atol=1e-6)


def test_encode_decode_round_trip(ssd):
    anchors = ssd.anchors(320, 320)
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(len(anchors), 2, generator=g) * 0.5
    boxes = torch.cat([xy, xy + 0.05 + torch.rand(len(anchors), 2, generator=g) * 0.45], dim=1)   # xyxy
    decoded = ssd.decode(ssd.encode(box_convert(boxes, "xyxy", "cxcywh"), anchors), anchors)
    torch.testing.assert_close(decoded, boxes, rtol=0, atol=1e-5)


def _anchors_xyxy(ssd):
    return box_convert(ssd.anchors(320, 320), "cxcywh", "xyxy")


def test_ground_truth_equal_to_an_anchor_is_matched_to_it_with_zero_offsets(ssd):
    anchors = ssd.anchors(320, 320)
    k = 1234
    gt = _anchors_xyxy(ssd)[k:k + 1]
    labels, targets = ssd_targets([{"boxes": gt * 320, "labels": torch.tensor([7])}], anchors, (320, 320), ssd.encode)
    assert labels[0, k] == 7
    torch.testing.assert_close(targets[0, k], torch.zeros(4), rtol=0, atol=1e-5)


def test_each_ground_truth_keeps_its_best_prior_even_below_the_threshold():
    anchors = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    gt = torch.tensor([[0.0, 0.0, 0.2, 0.2]])                        # IoU 0.16 with prior 0
    labels, boxes = match(gt, torch.tensor([3]), anchors, iou_threshold=0.5)
    assert labels.tolist() == [3, 0] and torch.equal(boxes[0], gt[0])


def test_priors_take_their_best_ground_truth_above_the_threshold_only():
    anchors = torch.tensor([[0.0, 0.0, 0.4, 0.4], [0.0, 0.0, 0.4, 0.5], [0.0, 0.0, 0.4, 0.9], [0.6, 0.6, 1.0, 1.0]])
    gt = torch.tensor([[0.0, 0.0, 0.4, 0.4], [0.6, 0.6, 1.0, 1.0]])
    labels, _ = match(gt, torch.tensor([1, 2]), anchors, iou_threshold=0.5)
    # prior 1: IoU 0.8 with box 0 -> positive; prior 2: IoU 0.44 -> background
    assert labels.tolist() == [1, 1, 0, 2]


def test_no_ground_truth_means_all_background():
    labels, _ = match(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.rand(5, 4).sort(-1).values)
    assert labels.tolist() == [0] * 5


def test_hard_negatives_are_three_per_positive_and_the_hardest():
    loss = torch.tensor([[0.9, 0.1, 0.8, 0.7, 0.2, 0.6, 0.5, 0.3, 0.4, 0.05]])
    positive = torch.zeros(1, 10, dtype=torch.bool)
    positive[0, 0] = True
    neg = hard_negatives(loss, positive, 3)
    assert neg.sum() == 3 and neg[0].nonzero().flatten().tolist() == [2, 3, 5]


def test_multibox_loss_counts_positives_and_mined_negatives_only():
    labels = torch.zeros(2, 20, dtype=torch.long)
    labels[0, :2] = 1                                   # 2 positives in image 0, none in image 1
    logits = torch.zeros(2, 20, 3)
    logits[1, :, 1] = 50.0                              # image 1: badly wrong, but it has no positives
    out = multibox_loss(logits, torch.zeros(2, 20, 4), labels, torch.zeros(2, 20, 4))
    # image 0: 2 positives + 6 negatives, each CE = log(3) with uniform logits, divided by 2 positives
    torch.testing.assert_close(out["cls_loss"], torch.tensor(8 * torch.log(torch.tensor(3.0)).item() / 2))
    assert out["box_loss"] == 0


def test_loss_without_positives_is_zero_not_nan():
    out = multibox_loss(torch.randn(1, 10, 3), torch.randn(1, 10, 4), torch.zeros(1, 10, dtype=torch.long),
                        torch.zeros(1, 10, 4))
    assert out["loss"] == 0


def test_loss_gradients_flow_and_first_call_keeps_batchnorm_statistics():
    torch.manual_seed(0)
    model = create_model("ssdlite_mobilevitv3_xxs", num_classes=4).train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    x = torch.rand(1, 3, 128, 128)
    model.train(False)
    cls, reg = model(x)
    model.train(True)
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 90.0, 100.0]]), "labels": torch.tensor([2])}]
    out = model.loss(cls, reg, targets, (128, 128))                  # first call at 128: probes the feature sizes
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()) and model.training
    out["loss"].backward()
    assert out["loss"] > 0 and all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
