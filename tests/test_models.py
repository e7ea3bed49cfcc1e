"""Properties every registered model must have, parametrized over the registry."""
from dataclasses import replace

import pytest
import torch

import mobilevitv3
from mobilevitv3.bench.counting import param_count
from mobilevitv3.models import CONFIGS
from mobilevitv3.models.backbone import MobileViT
from mobilevitv3.models.config import V1

CLASSIFIERS = mobilevitv3.list_models(task="classification")
DENSE = mobilevitv3.list_models(task="segmentation") + mobilevitv3.list_models(task="detection")
SIZES = [(64, 64), (64, 96), (67, 45)]  # square, non-square, odd (exercises the in-block resizes)


def _outputs(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_classifier_output_shape(name, size):
    model = mobilevitv3.create_model(name, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, *size)).shape == (2, 7)


@pytest.mark.parametrize("name", DENSE)
def test_dense_output_shape(name):
    model = mobilevitv3.create_model(name, num_classes=5).eval()
    h, w = 67, 45
    with torch.no_grad():
        out = model(torch.randn(1, 3, h, w))
    if model.task == "segmentation":
        assert out.shape == (1, 5, h, w)  # logits at the input size, whatever the output stride
    else:
        cls, box = out
        anchors = model.anchors(h, w).shape[0]
        assert cls.shape == (1, anchors, 5) and box.shape == (1, anchors, 4)


@pytest.mark.parametrize("name", CLASSIFIERS + DENSE)
def test_every_parameter_gets_finite_gradient(name):
    torch.manual_seed(0)
    model = mobilevitv3.create_model(name, num_classes=3).train()
    sum(o.float().pow(2).mean() for o in _outputs(model(torch.randn(2, 3, 64, 64)))).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_forward_intermediates_agree_with_feature_info(name, output_stride):
    model = MobileViT(CONFIGS[name], output_stride=output_stride, features_only=True).eval()
    with torch.no_grad():
        feats = model.forward_intermediates(torch.randn(1, 3, 128, 128), intermediates_only=True)
    assert len(feats) == len(model.feature_info) == 5
    for f, info in zip(feats, model.feature_info):
        assert f.shape[1] == info["num_chs"]
        assert f.shape[-1] == 128 // info["reduction"]
    assert max(i["reduction"] for i in model.feature_info) == output_stride


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_eval_output_does_not_depend_on_batch(name):
    model = mobilevitv3.create_model(name, num_classes=4).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x[:1]), model(x)[:1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("switch,value,changed", [
    ("fusion_kernel", 1, {"fusion.conv.weight"}),
    ("fuse", "local", {"fusion.conv.weight"}),
    ("residual", True, set()),
    ("local_dw", True, {"local_rep.conv_kxk.conv.weight"}),
])
def test_ablation_switch_changes_exactly_its_module(switch, value, changed):
    """Each MobileViTv3 change, applied alone to MobileViTv1-S, changes only the module it names."""
    base_cfg = CONFIGS["mobilevit_s"]
    base, other = MobileViT(base_cfg), MobileViT(replace(base_cfg, block=replace(V1, **{switch: value})))
    a, b = base.state_dict(), other.state_dict()
    assert a.keys() == b.keys()
    differ = {k.split(".", 3)[-1] for k in a if a[k].shape != b[k].shape}
    assert differ == changed
    if not changed:  # the residual adds no weights, only changes the function
        other.load_state_dict(a)
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            assert not torch.allclose(base.eval()(x), other.eval()(x))


def test_ablation_rows_start_at_v1_s_and_end_with_all_four_changes():
    from mobilevitv3.bench.zoo import ablation
    rows = ablation(64)
    assert rows[0]["params"] == param_count(mobilevitv3.create_model("mobilevit_s"))
    assert rows[0]["block"] == {"fusion_kernel": 3, "fuse": "input", "residual": False, "local_dw": False}
    assert rows[-1]["block"] == {"fusion_kernel": 1, "fuse": "local", "residual": True, "local_dw": True}
    assert len({r["params"] for r in rows}) == 4  # the residual row adds no parameters


@pytest.mark.parametrize("name,params", [
    ("mobilevitv2_125", 7_478_089), ("mobilevitv2_150", 10_594_753), ("mobilevitv2_175", 14_251_833),
    ("mobilevitv2_200", 18_449_329), ("mobilevitv3_125", 7_849_289), ("mobilevitv3_150", 11_129_281),
    ("mobilevitv3_175", 14_979_385), ("mobilevitv3_200", 19_399_601)])
def test_derived_widths_have_official_parameter_counts(name, params):
    """Widths without a fixture: the counts the official code gives (reference v2_family.md §5)."""
    assert param_count(mobilevitv3.create_model(name)) == params


def test_reset_classifier_changes_only_the_head():
    model = mobilevitv3.create_model("mobilevitv3_xxs").eval()
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    model.reset_classifier(10)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_ssd_anchors_leave_batchnorm_statistics_untouched():
    model = mobilevitv3.create_model("ssdlite_mobilevitv3_xxs").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.anchors(96, 128).shape[1] == 4
    assert model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
