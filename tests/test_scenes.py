"""The embedded digit scenes (`mobilevitv3.data.scenes`): exact masks and boxes, a fixed split, determinism."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilevitv3.data.scenes import (
    SCENE_CLASSES, SceneBoxes, SceneMasks, SceneSpec, coco_ground_truth, digit_pools, make_scene)

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
    assert min(counts) >= 1 and max(counts) == 4 and np.mean(counts) > 2
    heights = np.concatenate([s.boxes[:, 3] - s.boxes[:, 1] for s in scenes])
    assert heights.max() > 2 * heights.min()                                # varied scale
    labels = np.concatenate([s.labels for s in scenes])
    assert set(labels.tolist()) == set(range(1, 11))                        # every digit class occurs
    for s in scenes[:10]:                                                   # digits stand out from their ground
        ink = s.mask > 0
        ring = np.zeros_like(ink)
        for x1, y1, x2, y2 in s.boxes.astype(int):
            ring[max(y1 - 2, 0):y2 + 2, max(x1 - 2, 0):x2 + 2] = True
        ring &= ~ink
        contrast = np.linalg.norm(s.image[ink].mean(0) - s.image[ring].mean(0).astype(float))
        assert contrast > 20
    assert len({tuple(s.image[0, 0]) for s in scenes}) > 30                 # varied backgrounds


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
