"""timm's model contract on every model `import mobilevitv3.timm` registers (written from timm's documented
behaviour): pretrained_cfg from the release tag, classifier/pooling/feature API, features_only, FX and TorchScript,
and the official file route with the v1 family's BGR input handled inside the model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

timm = pytest.importorskip("timm")
import mobilevitv3  # noqa: E402
import mobilevitv3.timm as mt  # noqa: E402
from official import assert_matches, inputs, load_fixture  # noqa: E402

NAMES = sorted(mt.NAMES.values())
SUBSET = ["mobilevitv3_xxs", "mobilevit_xxs_exact", "mobilevitv3_050", "mobilevitv2_050_exact"]  # both families
X = torch.randn(1, 3, 64, 128, generator=torch.Generator().manual_seed(0))
ODD = torch.randn(1, 3, 96, 80, generator=torch.Generator().manual_seed(1))   # odd maps: the blocks' resize paths


def _create(name: str, **kwargs) -> torch.nn.Module:
    return timm.create_model(name, **kwargs).eval()


def test_timm_registration_keeps_timms_own_entries():
    assert type(timm.create_model("mobilevit_xxs")).__module__.startswith("timm.")
    assert all(timm.is_model(n) for n in NAMES) and len(NAMES) == len(mobilevitv3.list_models(task="classification"))
    assert {n for n in NAMES if n.endswith(mt.SUFFIX)} == {n + mt.SUFFIX for n in mt.NAMES if n.startswith(
        ("mobilevit_", "mobilevitv2_"))}


@pytest.mark.parametrize("name", NAMES)
def test_timm_pretrained_cfg_is_the_tags(name):
    arch = next(a for a, n in mt.NAMES.items() if n == name)
    pre = mobilevitv3.get_tag(f"{arch}.in1k").preprocess
    model = _create(f"{name}.in1k")
    cfg = timm.data.resolve_data_config(model=model)
    assert cfg["input_size"] == (3, pre.crop, pre.crop) and cfg["interpolation"] == pre.interpolation
    assert cfg["mean"] == (0.0, 0.0, 0.0) and cfg["std"] == (1.0, 1.0, 1.0)
    assert int(pre.crop / cfg["crop_pct"] + 1e-6) == pre.resize
    state = model.state_dict()
    pc = model.pretrained_cfg
    assert pc["first_conv"] + ".weight" in state and pc["classifier"] + ".weight" in state
    assert pc["num_classes"] == 1000 and pc["license"] and pc["tag"] == "in1k"
    assert model.flip_channels == (pre.channel_order == "bgr")   # timm feeds RGB: the v1 family flips it


@pytest.mark.parametrize("name", NAMES)
def test_timm_head_api(name):
    model = _create(name, num_classes=7)
    with torch.no_grad():
        feats = model.forward_features(X)
        assert feats.shape[1] == model.num_features and feats.shape[-2:] == (2, 4)
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (1, model.head_hidden_size) and model(X).shape == (1, 7)
        assert model.get_classifier().out_features == 7
        model.reset_classifier(0)
        assert model.num_classes == 0 and torch.equal(model(X), pre)
        model.reset_classifier(0, "")
        assert torch.equal(model(X), feats)
        bare = _create(name, num_classes=0, global_pool="")
        assert bare(X).shape == feats.shape


def test_timm_construction_kwargs_as_for_timm_models():
    with pytest.raises(TypeError, match="not_a_model_arg"):
        timm.create_model("mobilevitv3_xxs", not_a_model_arg=1)
    with torch.device("meta"):
        model = timm.create_model("mobilevitv3_xxs", device="meta", dtype=torch.float64)
    model.eval().reset_classifier(0, "")
    model.reset_classifier(5)                   # a classifier on unpooled maps: back to average pooling
    assert model.global_pool == "avg" and not model.fc.training
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("meta", torch.float64)}


def test_timm_global_pool_choices():
    model = _create("mobilevitv3_050", global_pool="max")
    with torch.no_grad():
        feats = model.forward_features(X)
        assert torch.equal(model.forward_head(feats, pre_logits=True), feats.amax(dim=(-2, -1)))
        model.reset_classifier(3, "avg")
        assert torch.equal(model.forward_head(feats, pre_logits=True), feats.mean(dim=(-2, -1)))
    with pytest.raises(mobilevitv3.UserError, match="needs num_classes=0"):
        model.reset_classifier(3, "")


@pytest.mark.parametrize("name", NAMES)
def test_timm_forward_intermediates_follow_feature_info(name):
    model = _create(name)
    info = model.feature_info
    with torch.no_grad():
        final, maps = model.forward_intermediates(X)
        assert torch.equal(final, model.forward_features(X))
        assert [m.shape[1] for m in maps] == [f["num_chs"] for f in info]
        assert [m.shape[-2] for m in maps] == [64 // f["reduction"] for f in info]
        last2 = model.forward_intermediates(X, indices=2, intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(last2, maps[-2:]))
        _, picked = model.forward_intermediates(X, indices=[0, -2], stop_early=True)
        assert torch.equal(picked[0], maps[0]) and torch.equal(picked[1], maps[3])


@pytest.mark.parametrize("name", SUBSET)
def test_timm_features_only_and_fx_extractor_equal_forward_intermediates(name):
    from torchvision.models.feature_extraction import create_feature_extractor
    model = _create(name)
    feat = _create(name, features_only=True, out_indices=(1, 3, 4))
    feat.model.load_state_dict(model.state_dict(), strict=False)   # the pruned head is left out
    fx = create_feature_extractor(model, {f"stages.{i}": str(i) for i in (1, 3, 4)})
    with torch.no_grad():
        ref = model.forward_intermediates(X, indices=[1, 3, 4], intermediates_only=True)
        got = feat(X)
        assert feat.feature_info.channels() == [r.shape[1] for r in ref]
        assert all(torch.equal(a, b) for a, b in zip(got, ref))
        assert all(torch.equal(a, b) for a, b in zip(fx(X).values(), ref))


@pytest.mark.parametrize("name", SUBSET)
def test_timm_script_and_fx_equal_eager(name):
    model = _create(name)
    with torch.no_grad():
        ref = model(ODD)
        assert torch.equal(torch.jit.script(model)(ODD), ref)
        traced = torch.fx.symbolic_trace(model)
        assert torch.equal(traced(ODD), ref) and torch.equal(torch.jit.script(traced)(ODD), ref)


@pytest.mark.parametrize("name", ["deeplabv3_mobilevitv3_050.voc", "ssdlite_mobilevitv3_xxs.coco"])
def test_dense_models_script_and_trace(name):
    model = mobilevitv3.create_model(name).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        ref = model(x)
        ref = ref if isinstance(ref, tuple) else (ref,)
        traced = torch.fx.symbolic_trace(model, concrete_args={"size": None} if "deeplab" in name else None)
        for other in (torch.jit.script(model)(x), traced(x)):
            other = other if isinstance(other, tuple) else (other,)
            assert all(torch.equal(a, b) for a, b in zip(other, ref))


@pytest.mark.parametrize("name,output_stride", [("mobilevitv3_050", 8), ("mobilevitv3_xxs", 16)])
def test_timm_output_stride(name, output_stride):
    feat = _create(name, features_only=True, output_stride=output_stride)
    assert max(feat.feature_info.reduction()) == output_stride
    assert feat(X)[-1].shape[-2] == 64 // output_stride


def test_timm_grad_checkpointing_and_drop_path():
    model = _create("mobilevitv3_xxs", num_classes=5, drop_path_rate=0.3, drop_rate=0.2).train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    plain = model(x)
    plain.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing()
    torch.manual_seed(0)
    ckpt = model(x)
    ckpt.sum().backward()
    torch.testing.assert_close(ckpt, plain)
    assert all(torch.allclose(p.grad, grads[n], atol=1e-6) for n, p in model.named_parameters())
    assert not torch.equal(model(x), plain)        # stochastic depth/dropout draw anew in training
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("fixture,name", [("mobilevitv3_xxs.in1k", "mobilevitv3_xxs"),
                                          ("mobilevit_xxs.in1k", "mobilevit_xxs_exact"),
                                          ("mobilevitv3_050.in1k", "mobilevitv3_050")])
def test_timm_official_file_gives_the_official_outputs(fixture, name, official_checkpoint):
    fx = load_fixture(fixture)
    model = _create(f"{name}.in1k", pretrained=True, pretrained_cfg_overlay=dict(file=str(official_checkpoint(fx))))
    bgr = mobilevitv3.get_tag(fixture).preprocess.channel_order == "bgr"
    with torch.no_grad():
        for x, expected in zip(inputs(fx), fx["outputs"]):
            assert_matches(model(x.flip(1) if bgr else x), expected, fx["tolerance"])   # the RGB of the input


def test_timm_user_path_reproduces_the_official_pipeline(official_checkpoint):
    """resolve_data_config + create_transform on an image, then the official file: the official model's logits
    on the official input (short side 288 already: no resize; centre crop 256; BGR in [0, 1])."""
    fx = load_fixture("mobilevitv3_xxs.in1k")
    rgb = np.random.default_rng(0).integers(0, 256, (288, 352, 3), dtype=np.uint8)
    model = _create("mobilevitv3_xxs.in1k", pretrained=True,
                    pretrained_cfg_overlay=dict(file=str(official_checkpoint(fx))))
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
    official_input = torch.from_numpy(rgb[16:272, 48:304, ::-1].copy()).permute(2, 0, 1).float() / 255
    reference = mobilevitv3.create_model(fx["name"], weights=str(official_checkpoint(fx))).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(transform(Image.fromarray(rgb))[None]), reference(official_input[None]),
                                   rtol=1e-5, atol=1e-5)
