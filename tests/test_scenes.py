"""The embedded digit scenes (`mobilevitv3.data.scenes`): exact masks and boxes, a fixed split, determinism."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilevitv3.data.scenes import (
    SCENE_CLASSES,
    SceneBoxes,
    SceneMasks,
    SceneSpec,
    coco_ground_truth,
    digit_pools,
    make_scene,
)

SPEC = SceneSpec(size=96, scale=(20, 48), train_scenes=12, val_scenes=6)


def test_make_scene_is_deterministic_per_index():
    a, b = make_scene(SPEC, "train", 3), make_scene(SPEC, "train", 3)
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("image", "mask", "boxes", "labels"))
    other = make_scene(SPEC, "train", 4)
    assert not np.array_equal(a.image, other.image)
    assert not np.array_equal(a.image, make_scene(SPEC, "val", 3).image)   # the splits are different scenes


def test_make_scene_boxes_are_the_tight_boxes_of_the_mask():
    for index in range(20):
        s = make_scene(SPEC, "train", index)
        covered = np.zeros_like(s.mask, bool)
        for (x1, y1, x2, y2), label in zip(s.boxes.astype(int), s.labels):
            window = s.mask[y1:y2, x1:x2] == label
            # tight: every border row and column of the box holds ink of its digit
            assert window[0].any() and window[-1].any() and window[:, 0].any() and window[:, -1].any()
            assert set(np.unique(s.mask[y1:y2, x1:x2])) <= {0, int(label)}   # one digit per box
            covered[y1:y2, x1:x2] |= window
        assert np.array_equal(covered, s.mask > 0)                          # no ink outside the boxes
        assert sorted(np.unique(s.mask[s.mask > 0])) == sorted(set(s.labels.tolist()))


def test_make_scene_is_a_real_task():
    scenes = [make_scene(SPEC, "train", i) for i in range(40)]
    counts = [len(s.labels) for s in scenes]
    assert min(counts) >= 1 and max(counts) == 3 and np.mean(counts) > 1.5
    heights = np.concatenate([s.boxes[:, 3] - s.boxes[:, 1] for s in scenes])
    assert heights.max() > 1.8 * heights.min()                              # varied scale
    labels = np.concatenate([s.labels for s in scenes])
    assert set(labels.tolist()) == set(range(1, 11))                        # every digit class occurs
    for s in scenes[:10]:
        for (x1, y1, x2, y2), label in zip(s.boxes.astype(int), s.labels):
            tile = s.mask[y1:y2, x1:x2] == label
            ring = np.zeros_like(s.mask, bool)
            ring[max(y1 - 3, 0):y2 + 3, max(x1 - 3, 0):x2 + 3] = True
            ring[y1:y2, x1:x2] = False
            ring &= s.mask == 0
            crop = s.image[y1:y2, x1:x2].astype(float)
            if ring.any():                                                  # a tile stands out from its ground
                assert np.linalg.norm(crop[tile].mean(0) - s.image[ring].mean(0)) > 20
            # the digit is written on the tile: the tile's own pixels hold two clearly different colours
            spread = np.percentile(np.linalg.norm(crop[tile] - np.median(crop[tile], 0), axis=1), 95)
            assert spread > 40
    assert len({tuple(s.image[0, 0]) for s in scenes}) > 30                 # varied backgrounds


def _perfect_labels(mask: np.ndarray, stride: int) -> np.ndarray:
    """The best a head with a 1/stride logit map can draw: each cell holds the class shares of its pixels, the map
    is upsampled bilinearly (as the dense heads upsample their logits, align_corners False) and the argmax taken."""
    import torch.nn.functional as F
    shares = F.avg_pool2d(F.one_hot(torch.from_numpy(mask).long(), len(SCENE_CLASSES)).permute(2, 0, 1)[None]
                          .float(), stride)                                 # [1, classes, H/stride, W/stride]
    return F.interpolate(shares, size=mask.shape, mode="bilinear", align_corners=False).argmax(1)[0].numpy()


def _strides_of_segmentation_models() -> set[int]:
    from mobilevitv3.models import get_tag, list_models
    return {get_tag(n).output_stride for n in list_models(tags=True, task="segmentation")} | {16}   # 16: untagged


@pytest.mark.parametrize("stride", [8, 16])
def test_a_perfect_predictor_at_the_dense_output_strides_draws_the_held_out_scenes(stride):
    from mobilevitv3.tasks.metrics import ConfusionMatrix
    assert _strides_of_segmentation_models() == {8, 16}                     # the strides parametrized here
    spec = SceneSpec()                                                      # the default set the recipes train on
    cm = ConfusionMatrix(len(SCENE_CLASSES))
    for index in range(spec.val_scenes):                                    # the whole fixed held-out split
        s = make_scene(spec, "val", index)
        cm.update(torch.from_numpy(_perfect_labels(s.mask, stride)), torch.from_numpy(s.mask).long())
    assert cm.compute()["miou"] >= (0.95 if stride == 8 else 0.9)
    # the scenes need that stride: at 32 the same perfect predictor falls well short
    if stride == 16:
        coarse = ConfusionMatrix(len(SCENE_CLASSES))
        for index in range(50):
            s = make_scene(spec, "val", index)
            coarse.update(torch.from_numpy(_perfect_labels(s.mask, 32)), torch.from_numpy(s.mask).long())
        assert coarse.compute()["miou"] < 0.85


def test_held_out_boxes_have_ssdlite_priors_to_match_at_the_recipe_stride():
    """SSD trains a box through the priors overlapping it by IoU >= 0.5: at the scene recipe's output stride 16
    nearly every held-out tile has one; at the default 32 (a 4x4 grid for the 0.26 priors) a fifth do not."""
    from torchvision.ops import box_convert, box_iou

    from mobilevitv3 import create_model
    spec = SceneSpec()
    boxes = torch.cat([torch.from_numpy(make_scene(spec, "val", i).boxes) for i in range(spec.val_scenes)])
    assert len(boxes) > 1.2 * spec.val_scenes                               # more than one tile per scene on average
    matched = {}
    for stride in (16, 32):
        model = create_model("ssdlite_mobilevitv3_xxs", num_classes=11, output_stride=stride)
        priors = box_convert(model.anchors(spec.size, spec.size), "cxcywh", "xyxy") * spec.size
        matched[stride] = float((box_iou(boxes, priors).max(1).values >= 0.5).float().mean())
    assert matched[16] >= 0.98 and matched[32] < 0.85


def test_val_scenes_only_use_val_digits():
    pools = digit_pools()
    train_ids, val_ids = set(pools["train"][2].tolist()), set(pools["val"][2].tolist())
    assert not train_ids & val_ids and len(train_ids) + len(val_ids) == 1797
    used = {int(i) for k in range(30) for i in make_scene(SPEC, "val", k).sources}
    assert used <= val_ids and len(used) > 20
    used_train = {int(i) for k in range(30) for i in make_scene(SPEC, "train", k).sources}
    assert used_train <= train_ids


def test_scene_masks_feed_the_pair_transform():
    seen = []

    def transform(image, mask, size):
        seen.append(size)
        return image.float() / 255, mask

    data = SceneMasks(SPEC, "train", transform)
    image, mask = data[(2, 96, 96)]
    s = make_scene(SPEC, "train", 2)
    assert seen == [(96, 96)] and image.shape == (3, 96, 96) and mask.dtype == torch.int64
    assert torch.equal(mask, torch.from_numpy(s.mask).long())
    assert torch.allclose(image, torch.from_numpy(s.image).permute(2, 0, 1).float() / 255)
    assert len(data) == 12 and data.num_classes == 11 and data.classes == SCENE_CLASSES
    with pytest.raises(IndexError):
        data[12]


def test_scene_boxes_targets_and_coco_ground_truth():
    data = SceneBoxes(SPEC, "val")
    image, target = data[1]
    s = make_scene(SPEC, "val", 1)
    assert image.shape == (3, 96, 96) and target["image_id"] == 2 and target["orig_size"] == (96, 96)
    assert torch.equal(target["boxes"], torch.from_numpy(s.boxes)) and torch.equal(target["labels"],
                                                                                torch.from_numpy(s.labels))
    coco = data.coco
    assert sorted(coco.getImgIds()) == list(range(1, 7))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[2]))
    assert [a["category_id"] for a in anns] == s.labels.tolist()
    x1, y1, x2, y2 = s.boxes[0].tolist()
    assert anns[0]["bbox"] == [x1, y1, x2 - x1, y2 - y1]
    assert coco.loadCats(data.category_ids)[0]["name"] == "0"


def _results(data: SceneBoxes, shift: float) -> list[dict]:
    out = []
    for index in range(len(data)):
        s = data.scene(index)
        for (x1, y1, x2, y2), label in zip(s.boxes.tolist(), s.labels.tolist()):
            out.append({"image_id": index + 1, "category_id": label, "bbox": [x1 + shift, y1, x2 - x1, y2 - y1],
                        "score": 1.0})
    return out


def test_scene_coco_ground_truth_scores_perfect_boxes_one():
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval
    data = SceneBoxes(SPEC, "val")

    def coco_map(results):
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(data.coco, data.coco.loadRes(results), iouType="bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return ev.stats[0]
    assert coco_map(_results(data, 0.0)) == pytest.approx(1.0)
    assert coco_map(_results(data, 6.0)) < 0.7                # boxes off by 6 px lose the strict IoU thresholds
    assert coco_ground_truth(data).getAnnIds() == data.coco.getAnnIds()


TINY = {"scenes": {"size": 64, "scale": [16, 32], "train_scenes": 4, "val_scenes": 3}}
FAST = ["--epochs", "1", "--batch-size", "2", "--eval-batch-size", "3", "--workers", "0", "--threads", "1",
        "--warmup-iterations", "1", "--max-steps-per-epoch", "1", "--image-size", "64"]


def _run(capsys, argv):
    from mobilevitv3.cli import main
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("model, metric", [("deeplabv3_mobilevitv3_xxs", "miou"), ("ssdlite_mobilevitv3_xxs", "map")])
def test_dense_train_defaults_to_scenes_then_eval_and_predict(tmp_path, capsys, model, metric):
    out = tmp_path / "run"
    options = json.dumps(TINY | ({"short_side": [64, 64]} if metric == "miou" else {}))
    _run(capsys, ["train", "--model", model, "--out", str(out), "--task-options", options, *FAST])   # no --data
    (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert record["train_loss"] > 0 and record["val_images"] == 3
    ev = _run(capsys, ["eval", str(out / "best.pt"), "--data", "scenes", "--workers", "0"])
    best = max(record[f"val_{metric}"], record.get(f"ema_val_{metric}", -1))   # best.pt: the better copy
    assert ev[metric] == pytest.approx(best) and ev["images"] == 3     # the same val scenes, the same protocol
    from PIL import Image
    image = tmp_path / "scene.png"
    Image.fromarray(make_scene(SceneSpec(size=64, scale=(16, 32)), "val", 0).image).save(image)
    (pred,) = _run(capsys, ["predict", str(out / "best.pt"), str(image)])
    assert pred["size"] == [64, 64]
    names = [c["name"] for c in pred.get("classes", [])] + [d["name"] for d in pred.get("detections", [])]
    assert set(names) <= set(SCENE_CLASSES)                              # the scene class names travel
    twins = [tmp_path / d / "scene.png" for d in ("a", "b")]             # two inputs with one file name
    for k, path in enumerate(twins):
        path.parent.mkdir()
        Image.fromarray(make_scene(SceneSpec(size=64, scale=(16, 32)), "val", k).image).save(path)
    preds = _run(capsys, ["predict", str(out / "best.pt"), *map(str, twins), "--out", str(tmp_path / "drawn")])
    assert [Path(p["overlay"]).name for p in preds] == ["scene.png", "scene-1.png"]
    assert all(Image.open(p["overlay"]).size == (64, 64) for p in preds)
    _check_gallery(tmp_path, capsys, out / "best.pt", metric, [p["overlay"] for p in preds])


def _check_gallery(tmp_path, capsys, checkpoint, metric, overlays):
    """`gallery`: scene, truth and prediction columns; the prediction column is `predict --out`'s drawing of the
    same held-out scenes, the truth column draws the exact mask / boxes."""
    from PIL import Image

    from mobilevitv3.cli import main
    from mobilevitv3.infer.gallery import HEADER
    assert main(["gallery", str(checkpoint), "--out", str(tmp_path / "g.jpg")]) == 2      # checked before writing
    assert "must name a .png" in capsys.readouterr().err and not (tmp_path / "g.jpg").exists()
    got = _run(capsys, ["gallery", str(checkpoint), "--out", str(tmp_path / "g.png"), "--scenes", "2", "--zoom", "1"])
    assert got["scenes"] == [0, 1] and got["columns"][:2] == ["scene", "true " + ("mask" if metric == "miou" else
                                                                                  "boxes")]
    picture = np.asarray(Image.open(tmp_path / "g.png"))
    assert picture.shape == (HEADER + 2 * 64, 3 * 64, 3)
    for row in range(2):
        s = make_scene(SceneSpec(size=64, scale=(16, 32)), "val", row)
        scene, truth, predicted = (picture[HEADER + row * 64:HEADER + (row + 1) * 64, c * 64:(c + 1) * 64]
                                   for c in range(3))
        assert np.array_equal(scene, s.image)
        assert np.array_equal(predicted, np.asarray(Image.open(overlays[row]).convert("RGB")))
        changed = (truth != s.image).any(-1)
        if metric == "miou":        # the true mask tints exactly the tiles
            assert not changed[s.mask == 0].any() and changed[s.mask > 0].mean() > 0.95
        else:                       # each true box is outlined along its left edge
            for x1, y1, _, y2 in s.boxes.astype(int):
                assert changed[y1:y2, x1].mean() > 0.9


def test_predict_overlay_names_never_collide(tmp_path):
    from mobilevitv3.infer.run import _overlay_paths
    names = [p.name for p in _overlay_paths(str(tmp_path), ["a/x.png", "b/x.jpg", "c/x-1.png", "y.png"])]
    assert names == ["x.png", "x-1.png", "x-1-1.png", "y.png"] and len(set(names)) == 4


def test_masked_cross_entropy_balance_weights_rare_classes():
    import torch.nn.functional as F

    from mobilevitv3.tasks.segmentation import masked_cross_entropy
    target = torch.zeros(1, 10, 10, dtype=torch.long)
    target[0, :1] = 1                                    # 10% of the pixels are class 1
    target[0, 9, 9] = 255                                # ignored
    logits = torch.zeros(1, 3, 10, 10)
    logits[:, 0] = 2.0                                   # confident "class 0" everywhere: wrong on the rare class
    valid = target != 255
    plain = masked_cross_entropy(logits, target)
    assert plain == pytest.approx(float(F.cross_entropy(logits, target, ignore_index=255)))
    balanced = masked_cross_entropy(logits, target, balance=0.5)
    per_pixel = F.cross_entropy(logits, target.clamp(max=2), reduction="none")[valid]
    w = torch.tensor([(89 / 99) ** -0.5, (10 / 99) ** -0.5])[target[valid]]
    assert balanced == pytest.approx(float((w * per_pixel).sum() / w.sum()))   # mean pixel weight 1
    assert balanced > 1.5 * plain                                               # the rare class counts more
