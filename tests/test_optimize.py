"""`mobilevitv3.optimize`: the fast inference path computes what the eager model computes (within 1e-4 of the
largest output), for each family and task, with non-trivial BatchNorm statistics so that folding bugs show."""
import pytest
import torch
from torch import nn

import mobilevitv3
from mobilevitv3.errors import UserError

pytest.importorskip("onnxruntime")

# v1, v3 on v1, v2, v3 on v2, segmentation, detection (a tuple of outputs).
MODELS = ["mobilevit_xxs", "mobilevitv3_xxs", "mobilevitv2_050", "mobilevitv3_050", "deeplabv3_mobilevitv3_xxs",
          "ssdlite_mobilevitv3_xxs"]
SIZE = 64


def _trained_looking(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = mobilevitv3.create_model(name)
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)
    return model.eval()


def _assert_same(out, ref) -> None:
    outs, refs = (out, ref) if isinstance(ref, tuple) else ((out,), (ref,))
    assert len(outs) == len(refs)
    scale = max(1.0, *(r.abs().max().item() for r in refs))
    for o, r in zip(outs, refs):
        assert o.shape == r.shape
        assert (o - r).abs().max().item() <= 1e-4 * scale


@pytest.mark.parametrize("name", MODELS)
def test_optimize_matches_eager_within_1e_4(name):
    model = _trained_looking(name)
    fast = mobilevitv3.optimize(model, image_size=SIZE, threads=1)
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _assert_same(fast(x), model(x))
    assert fast.backend == "onnxruntime" and fast.identity == model.identity


@pytest.mark.parametrize("name", ["mobilevitv3_xxs", "mobilevitv3_050"])
def test_optimize_eager_backend_matches_eager(name):
    model = _trained_looking(name)
    fast = mobilevitv3.optimize(model, backend="eager")
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        _assert_same(fast(x), model(x))


def test_optimize_leaves_the_model_untouched():
    model = _trained_looking("mobilevitv3_xxs")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mobilevitv3.optimize(model, image_size=SIZE, threads=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_optimize_other_image_size_is_a_clear_error():
    fast = mobilevitv3.optimize(mobilevitv3.create_model("mobilevitv3_xxs").eval(), image_size=SIZE, threads=1)
    with pytest.raises(ValueError, match="built for 64x64"):
        fast(torch.rand(1, 3, 96, 96))


def test_optimize_unknown_backend_is_a_user_error():
    with pytest.raises(UserError, match="unknown optimize backend"):
        mobilevitv3.optimize(mobilevitv3.create_model("mobilevitv3_xxs"), backend="tensorrt")
