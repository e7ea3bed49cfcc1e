"""The official trainers' semantics (../shared/reference/training.md): initialisation (§1), lr groups and schedule
(§2, §3, §11), best checkpoints, k-best averaging and EMA (§4), losses (§5), accumulation (§8).
Each test pins one `Check:` line of training.md or a number measured on the official code."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mobilevitv3 import create_model
from mobilevitv3.models.init import init_weights
from mobilevitv3.train.averaging import BestTracker, average_state_dicts, official_ema_update, pool_name
from mobilevitv3.train.optim import LRSchedule, group_lrs, is_step_boundary, official_lr


def _built(name: str, family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return init_weights(create_model(name), family)


# ---- §1 initialisation ---------------------------------------------------------------------------------------

def test_init_weights_v1_qkv_is_trunc_normal_002_with_zero_bias():
    qkv = _built("mobilevitv3_xxs", "v1").stages[2][1].global_rep[0].attn.qkv_proj
    assert abs(qkv.weight.std().item() - 0.020) < 0.001
    assert torch.count_nonzero(qkv.bias) == 0


def test_init_weights_v2_qkv_keeps_pytorch_default_with_bias():
    qkv = _built("mobilevitv3_050", "v2").stages[2][1].global_rep[0].attn.qkv_proj
    assert abs(qkv.weight.std().item() - 0.072) < 0.003
    assert 0.06 < qkv.bias.std().item() < 0.085


def test_init_weights_v1_convs_are_kaiming_fan_out_without_groups():
    m = _built("mobilevitv3_xxs", "v1")
    dw = m.stages[0][0].dw.conv.weight                     # 32 x 1 x 3 x 3 depthwise: fan_out = 9 * 32
    assert abs(dw.std().item() - (2 / (9 * 32)) ** 0.5) < 0.006
    assert abs(m.final_conv.conv.weight.std().item() - (2 / 512) ** 0.5) < 0.002
    assert abs(m.fc.weight.std().item() - 0.02) < 0.0005 and torch.count_nonzero(m.fc.bias) == 0
    norms = [x for x in m.modules() if isinstance(x, (torch.nn.BatchNorm2d, torch.nn.LayerNorm))]
    assert all(bool((n.weight == 1).all() and (n.bias == 0).all()) for n in norms)


def test_init_weights_v2_classifier_is_xavier_with_zero_bias():
    fc = _built("mobilevitv3_050", "v2").fc                 # 1000 x 256: std sqrt(2 / 1256)
    assert abs(fc.weight.std().item() - (2 / 1256) ** 0.5) < 0.001
    assert torch.count_nonzero(fc.bias) == 0


def test_init_weights_v1_deeplab_head_is_kaiming():
    head = _built("deeplabv3_mobilevitv3_xxs.voc", "v1").head
    assert abs(head.classifier.conv.weight.std().item() - 0.31) < 0.01
    assert torch.count_nonzero(head.classifier.conv.bias) == 0
    assert abs(head.aspp.branches[1].conv.weight.std().item() - 0.0295) < 0.001


def test_init_weights_v2_deeplab_head_keeps_pytorch_default():
    head = _built("deeplabv3_mobilevitv3_050.voc", "v2").head
    assert abs(head.aspp.project.conv.weight.std().item() - 0.0114) < 0.0005
    assert abs(head.classifier.conv.bias.std().item() - 0.0255) < 0.01


@pytest.mark.parametrize("name,family", [("ssdlite_mobilevitv3_xxs.coco", "v1"),
                                         ("ssdlite_mobilevitv3_050.coco", "v2")])
def test_init_weights_ssd_heads_are_xavier_with_zero_bias(name, family):
    model = _built(name, family)
    convs = [m for part in (model.extra_layers, model.ssd_heads) for m in part.modules()
             if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.bias is None or torch.count_nonzero(c.bias) == 0 for c in convs)
    pw = model.ssd_heads[0].predict.pw.conv.weight           # 510 x 512 x 1 x 1
    assert abs(pw.std().item() - (2 / (510 + 512)) ** 0.5) < 0.001


# ---- §2, §3, §11 learning rates ------------------------------------------------------------------------------

def test_group_lrs_multiply_before_rounding():
    lr = official_lr(600, 1, max_lr=9e-4, min_lr=1e-6, epochs=50, warmup_iterations=500, warmup_init_lr=9e-5)
    assert group_lrs(lr, [1.0, 10.0]) == [0.00089911, 0.00899113]


V1_TRACE = [0.0002, 0.00056, 0.00092, 0.00128, 0.00164, 0.002] + [0.0011] * 7
V2_TRACE = [1e-06, 0.00066733, 0.00133367, 0.002, 0.002] + [0.0011] * 5


@pytest.mark.parametrize("trace,epochs,warmup,init", [(V1_TRACE, [0] * 6 + [1] * 7, 5, 2e-4),
                                                      (V2_TRACE, [0] * 5 + [1] * 5, 3, 1e-6)])
def test_official_lr_reproduces_recorded_traces(trace, epochs, warmup, init):
    got = [group_lrs(official_lr(it, e, max_lr=2e-3, min_lr=2e-4, epochs=2, warmup_iterations=warmup,
                                 warmup_init_lr=init), [1.0])[0] for it, e in enumerate(epochs)]
    assert got == trace


@pytest.mark.parametrize("trace,epochs,warmup,init", [(V1_TRACE, [0] * 6 + [1] * 7, 5, 2e-4),
                                                      (V2_TRACE, [0] * 5 + [1] * 5, 3, 1e-6)])
def test_lr_schedule_of_train_config_reproduces_recorded_traces(trace, epochs, warmup, init):
    from mobilevitv3.train.config import TrainConfig
    cfg = TrainConfig(epochs=2, lr=2e-3, min_lr=2e-4, warmup_iterations=warmup, warmup_init_lr=init)
    optimizer = torch.optim.AdamW([{"params": [torch.zeros(1, requires_grad=True)], "lr_multiplier": 1.0},
                                   {"params": [torch.zeros(1, requires_grad=True)], "lr_multiplier": 1.0}])
    got = []
    for it, e in enumerate(epochs):
        LRSchedule(cfg).apply(optimizer, it, e)
        assert optimizer.param_groups[0]["lr"] == optimizer.param_groups[1]["lr"]
        got.append(optimizer.param_groups[0]["lr"])
    assert got == trace


def test_lr_schedule_rounds_head_group_after_multiplier():
    from mobilevitv3.train.config import TrainConfig
    cfg = TrainConfig(epochs=50, lr=9e-4, min_lr=1e-6, warmup_iterations=500, warmup_init_lr=9e-5)
    optimizer = torch.optim.AdamW([{"params": [torch.zeros(1, requires_grad=True)], "lr_multiplier": 1.0},
                                   {"params": [torch.zeros(1, requires_grad=True)], "lr_multiplier": 10.0}])
    LRSchedule(cfg).apply(optimizer, 600, 1)
    assert [g["lr"] for g in optimizer.param_groups] == [0.00089911, 0.00899113]


def test_official_lr_never_reaches_min_lr():
    last = group_lrs(official_lr(10**6, 299, max_lr=2e-3, min_lr=2e-4, epochs=300), [1.0])[0]
    assert last == 0.00020005


def _two_class_folder(root) -> str:
    """4 training images a class (4 micro-batches of 2), 1 validation image a class."""
    from PIL import Image
    for split, n in (("train", 4), ("val", 1)):
        for c, colour in (("a", (230, 0, 0)), ("b", (0, 230, 0))):
            (root / split / c).mkdir(parents=True)
            for k in range(n):
                Image.new("RGB", (36, 36), colour).save(root / split / c / f"{k}.png")
    return str(root)


def _train_accumulating(tmp_path, model: str) -> None:
    from mobilevitv3.cli import main
    assert main(["train", "--model", model, "--image-size", "32", "--batch-size", "2", "--accum-steps", "2",
                 "--epochs", "1", "--threads", "1", "--workers", "0", "--warmup-iterations", "2", "--data",
                 _two_class_folder(tmp_path / "data"), "--out", str(tmp_path / "run")]) == 0


@pytest.mark.parametrize("model,counter", [("mobilevitv3_xxs", [0, 1, 2, 3]), ("mobilevitv3_050", [0, 0, 1, 1])])
def test_trainer_advances_the_lr_counter_per_family(tmp_path, monkeypatch, model, counter):
    """training.md §3, §8: with accum 2 over 4 micro-batches the counter the trainer gives the schedule before each
    micro-batch advances per micro-batch in the v1 family (by 2 per optimiser step), per optimiser step in v2."""
    seen, apply = [], LRSchedule.apply

    def spy(self, optimizer, iteration, epoch):
        seen.append(iteration)
        return apply(self, optimizer, iteration, epoch)
    monkeypatch.setattr(LRSchedule, "apply", spy)
    _train_accumulating(tmp_path, model)
    assert seen == counter
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["iteration"] == counter[-1] + 1


def test_is_step_boundary_drops_leftover_micro_batches():
    assert [is_step_boundary(i, 2) for i in range(5)] == [False, True, False, True, False]


def test_trainer_steps_with_the_sum_of_the_micro_batch_gradients(tmp_path, monkeypatch):
    """training.md §8 Check: with accum_freq 2 the gradient at the optimiser step is the sum, not the mean, of the
    two micro-batch gradients (each taken from the very loss the trainer back-propagates)."""
    from mobilevitv3.tasks.classification import Classification
    from mobilevitv3.train.trainer import Trainer
    micro, at_step = [], []
    loss_of, step = Classification.training_loss, Trainer._optimizer_step

    def spy_loss(self, model, batch, cfg):
        loss, stats = loss_of(self, model, batch, cfg)
        params = [p for p in model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        micro.append([torch.zeros_like(p) if g is None else g.detach().clone() for p, g in zip(params, grads)])
        return loss, stats

    def spy_step(self):
        at_step.append([torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
                        for p in self.model.parameters() if p.requires_grad])
        step(self)
    monkeypatch.setattr(Classification, "training_loss", spy_loss)
    monkeypatch.setattr(Trainer, "_optimizer_step", spy_step)
    _train_accumulating(tmp_path, "mobilevitv3_050")
    assert (len(micro), len(at_step)) == (4, 2)
    for k, grads in enumerate(at_step):
        first, second = micro[2 * k], micro[2 * k + 1]
        assert sum(float(a.abs().sum()) for a in first) > 0 and sum(float(b.abs().sum()) for b in second) > 0
        for g, a, b in zip(grads, first, second):
            torch.testing.assert_close(g, a + b)


# ---- §4 best checkpoints, k-best averaging, EMA ------------------------------------------------------------------

def _run(family: str, metrics: list[float], k: int = 5) -> tuple[dict[str, int], dict[str, int], list[list[str]]]:
    """Simulate the raw stream: {file: epoch whose weights it holds}, best file, and each epoch's averaged files."""
    tracker, pool, best, averages = BestTracker(family, k=k), {}, {}, []
    for epoch, metric in enumerate(metrics):
        u = tracker.update("raw", metric, list(pool))
        if u.is_best:
            best["checkpoint_best.pt"] = epoch
        if u.write:
            pool[u.write] = epoch
        for name in u.delete:
            del pool[name]
        averages.append(u.average)
    return pool, best, averages


def test_best_tracker_tie_is_a_new_best_and_v1_pool_takes_later_state():
    pool, best, _ = _run("v1", [70.0, 70.0, 69.5])
    assert best["checkpoint_best.pt"] == 1
    assert pool == {pool_name("raw", 70.0): 2}          # v1 writes under the running best's name every epoch
    pool, _, _ = _run("v2", [70.0, 70.0, 69.5])
    assert pool == {pool_name("raw", 70.0): 1}          # v2 only on a new best


def test_best_tracker_averages_only_after_k_plus_one_distinct_bests():
    metrics = [60.0, 61.0, 62.0, 63.0, 64.0, 63.5, 65.0]
    pool, _, averages = _run("v2", metrics)
    assert averages[:6] == [[]] * 6
    assert sorted(averages[6]) == sorted(pool_name("raw", v) for v in (61.0, 62.0, 63.0, 64.0, 65.0))
    assert pool_name("raw", 60.0) not in pool


def test_best_tracker_min_metric_and_ema_starts_from_raw_best():
    tracker = BestTracker("v1", higher_is_better=False)
    assert tracker.update("raw", 3.0, []).is_best and not tracker.update("raw", 3.5, []).is_best
    tracker.start()   # a resumed run: the EMA stream restarts from the raw best
    assert tracker.ema == 3.0 and not tracker.update("ema", 3.1, []).is_best


def test_average_state_dicts_float64_mean_and_truncated_integers():
    states = [{"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)},
              {"w": torch.tensor([2.0, 4.0]), "n": torch.tensor(4)}]
    out = average_state_dicts(states)
    assert torch.equal(out["w"], torch.tensor([1.5, 3.0])) and out["n"].item() == 3 and out["n"].dtype == torch.int64


def test_official_ema_update_rounds_coefficients_in_float32():
    ema, model = {"w": torch.ones(1)}, {"w": torch.zeros(1)}
    official_ema_update(ema, model, 0.0005)
    assert ema["w"].item() == pytest.approx(0.99949997663, abs=1e-11)
    torch.manual_seed(0)
    x = torch.rand(200_000) + 0.5
    ema = {"w": x.clone()}
    official_ema_update(ema, {"w": x}, 0.0005)           # model == ema: an exact lerp would not move
    shrink = ((ema["w"].double() - x.double()) / x.double()).mean().item()
    assert -3.0e-8 < shrink < -1.5e-8                    # f32(1 - m) + f32(m) = 1 - 2.33e-8


# ---- §5 losses ---------------------------------------------------------------------------------------------

def test_v1_label_smoothing_loss_equals_cross_entropy_with_smoothing():
    logits, eps, k = torch.tensor([[2.0, 0, 0, 0, 0, 0]], dtype=torch.float64), 0.1, 6
    logp = logits.log_softmax(-1)
    v1 = (1 - eps) * -logp[0, 0] + eps / k * -logp[0].sum()
    assert abs(v1.item() - F.cross_entropy(logits, torch.tensor([0]), label_smoothing=eps).item()) < 1e-7


def test_cutmix_target_weight_is_one_minus_clipped_box_area():
    from torchvision.transforms import v2
    images = torch.stack([torch.zeros(3, 32, 48), torch.ones(3, 32, 48)])
    for seed in range(20):                          # boxes centred near the border get clipped
        torch.manual_seed(seed)
        mixed, target = v2.CutMix(alpha=1.0, num_classes=2)(images, torch.tensor([0, 1]))
        pasted = mixed[0, 0].mean().item()          # fraction of image 0 taken from image 1
        assert abs(target[0, 0].item() - (1 - pasted)) < 1e-6


def test_multibox_loss_image_without_boxes_contributes_nothing():
    from mobilevitv3.models.ssd_loss import multibox_loss
    torch.manual_seed(0)
    logits, boxes, targets = torch.randn(2, 50, 5), torch.randn(2, 50, 4), torch.randn(2, 50, 4)
    labels = torch.zeros(2, 50, dtype=torch.long)
    labels[0, :4] = torch.tensor([1, 2, 3, 4])               # image 1 has no positive prior
    both = multibox_loss(logits, boxes, labels, targets)
    alone = multibox_loss(logits[:1], boxes[:1], labels[:1], targets[:1])
    for key in ("cls_loss", "box_loss"):
        assert torch.allclose(both[key], alone[key])
    empty = multibox_loss(logits[1:], boxes[1:], labels[1:], targets[1:])
    assert empty["loss"].item() == 0.0       # v1 would divide 0 by 0; we keep v2's max(1, N_pos) guard


# ---- §9 segmentation: head dropout, evaluation protocol, training-time validation ------------------------------

def test_v1_deeplab_head_has_elementwise_dropout_after_aspp_in_training_only():
    v1, v2 = create_model("deeplabv3_mobilevitv3_xxs.voc"), create_model("deeplabv3_mobilevitv3_050.voc")
    assert isinstance(v1.head.aspp_drop, torch.nn.Dropout) and v1.head.aspp_drop.p == 0.1
    assert v2.head.aspp_drop is None
    v1.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(v1(x), v1(x))


def test_segmentation_forward_size_upsamples_head_logits_directly():
    model = create_model("deeplabv3_mobilevitv3_050.voc").eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        feats = model.backbone(x)
        direct = F.interpolate(model.head(feats[-1]), (37, 50), mode="bilinear", align_corners=True)
        assert torch.allclose(model(x, size=(37, 50)), direct, atol=1e-6)


def _one_image_voc(root, size):
    import numpy as np
    from PIL import Image
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(voc / "JPEGImages" / "a.jpg")
    Image.fromarray(rng.integers(0, 3, size, dtype=np.uint8), mode="L").save(voc / "SegmentationClass" / "a.png")
    for split in ("train", "val"):
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("a\n")
    return root


def test_v2_segmentation_protocol_evaluates_at_672x512_and_scores_at_original_size(tmp_path):
    from mobilevitv3.tasks import get_task
    from mobilevitv3.tasks.segmentation import _label_maps
    from mobilevitv3.train.config import TrainConfig
    data = _one_image_voc(tmp_path, (375, 500))
    model, task = create_model("deeplabv3_mobilevitv3_050.voc").eval(), get_task("segmentation")
    cfg = TrainConfig(model="deeplabv3_mobilevitv3_050.voc", data=str(data), image_size=512)
    _, val = task.build_datasets(cfg, model, train=False)
    image, mask = val[0]
    assert image.shape == (3, 512, 672) and mask.shape == (375, 500)
    batch = task.collate([val[0]])
    with torch.no_grad():
        (labels,) = _label_maps(model, batch["images"], [tuple(m.shape[-2:]) for m in batch["masks"]], _nullcontext)
    assert labels.shape == (375, 500)
    train_set, val = task.build_datasets(cfg, model, train=True)
    assert val[0][0].shape == (3, 512, 512) and val[0][1].shape == (512, 512)   # training-time validation


def _nullcontext():
    import contextlib
    return contextlib.nullcontext()


def test_v1_segmentation_protocol_is_opencv_512_in_bgr(tmp_path):
    import cv2

    from mobilevitv3.tasks import get_task
    from mobilevitv3.train.config import TrainConfig
    data = _one_image_voc(tmp_path, (375, 500))
    model, task = create_model("deeplabv3_mobilevitv3_xxs.voc"), get_task("segmentation")
    cfg = TrainConfig(model="deeplabv3_mobilevitv3_xxs.voc", data=str(data), image_size=512)
    _, val = task.build_datasets(cfg, model, train=False)
    image, mask = val[0]
    bgr = cv2.imread(str(data / "VOCdevkit/VOC2012/JPEGImages/a.jpg"))
    expected = torch.from_numpy(cv2.resize(bgr, (512, 512), interpolation=cv2.INTER_LINEAR)).permute(2, 0, 1)
    assert torch.equal(image, expected.float() / 255) and mask.shape == (375, 500)


def test_keep_official_files_writes_best_prunes_pool_and_averages(tmp_path):
    from mobilevitv3.train.averaging import keep_official_files
    save = lambda path, w: torch.save(dict(w), path)             # noqa: E731
    load = lambda path: torch.load(path, weights_only=True)     # noqa: E731
    tracker = BestTracker("v2", k=2)
    for epoch, metric in enumerate([50.0, 51.0, 50.5, 52.0]):
        keep_official_files(tmp_path, tracker, "ema", metric, {"w": torch.tensor([float(epoch)])}, save, load)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint_ema_avg.pt", "checkpoint_ema_best.pt", "checkpoint_ema_score_51.0000.pt",
                     "checkpoint_ema_score_52.0000.pt"]
    assert load(tmp_path / "checkpoint_ema_best.pt")["w"].item() == 3.0
    assert load(tmp_path / "checkpoint_ema_avg.pt")["w"].item() == 2.0      # mean of epochs 1 and 3


def test_v2_segmentation_loss_is_main_plus_04_aux_without_halving():
    from mobilevitv3.tasks import get_task
    from mobilevitv3.train.config import TrainConfig
    torch.manual_seed(0)
    model = create_model("deeplabv3_mobilevitv3_050.voc").train()
    images, masks = torch.rand(2, 3, 64, 64), torch.randint(0, 21, (2, 64, 64))
    masks[:, :4] = 255
    batch = {"images": images, "masks": masks, "skipped": 0}
    torch.manual_seed(1)
    loss, _ = get_task("segmentation").training_loss(model, batch, TrainConfig(aux_loss_weight=0.4))
    torch.manual_seed(1)
    main, aux = model(images)                                # aux upsampled to the mask size (align_corners True)
    expected = F.cross_entropy(main, masks, ignore_index=255) + 0.4 * F.cross_entropy(aux, masks, ignore_index=255)
    assert torch.allclose(loss, expected, atol=1e-5)


def test_trainer_keeps_official_best_files_per_stream(tmp_path):
    import json

    from PIL import Image

    from mobilevitv3.cli import main
    for split in ("train", "val"):
        for i, c in enumerate("ab"):
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for k in range(4):
                Image.new("RGB", (36, 36), (230 * (i == 0), 230 * (i == 1), 20 * k)).save(
                    tmp_path / "data" / split / c / f"{k}.png")
    out = tmp_path / "run"
    assert main(["train", "--model", "mobilevitv3_xxs", "--image-size", "32", "--batch-size", "4", "--threads", "1",
                 "--workers", "0", "--warmup-iterations", "2", "--epochs", "3", "--k-best-checkpoints", "1",
                 "--data", str(tmp_path / "data"), "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for prefix, name in (("val", "checkpoint_best.pt"), ("ema_val", "checkpoint_ema_best.pt")):
        best, epoch = 0.0, None
        for r in records:                                    # ties count as a new best
            if round(r[f"{prefix}_top1"], 4) >= best:
                best, epoch = round(r[f"{prefix}_top1"], 4), r["epoch"]
        assert torch.load(out / name, weights_only=True)["epoch"] == epoch
    bests, best = set(), 0.0                                 # an average exists from k + 1 = 2 distinct bests on
    for r in records:
        if round(r["val_top1"], 4) >= best:
            best = round(r["val_top1"], 4)
            bests.add(best)
    assert (out / "checkpoint_avg.pt").is_file() == (len(bests) >= 2)
