"""The most important test: every official fixture reproduces through the user path
(official checkpoint file -> create_model(name, weights=file) -> eval outputs), with exact parameter counts
and exactly the official profiler's MACs."""
import pytest
import torch

import mobilevitv3
from mobilevitv3.bench.counting import official_macs, param_count
from official import assert_matches, fixture_names, inputs, load_fixture


@pytest.mark.parametrize("name", fixture_names())
def test_fixture_outputs_and_counts(name, official_checkpoint):
    fx = load_fixture(name)
    model = mobilevitv3.create_model(fx["name"], weights=official_checkpoint(fx)).eval()
    assert param_count(model) == fx["param_count"]
    with torch.no_grad():
        for x, expected in zip(inputs(fx), fx["outputs"]):
            out = model(x)
            outs, exps = (out, expected) if isinstance(out, tuple) else ((out,), (expected,))
            assert len(outs) == len(exps)
            for o, e in zip(outs, exps):
                assert_matches(o, e, fx["tolerance"])
    assert official_macs(model, 256) == int(fx["macs_256"])


@pytest.mark.parametrize("name", [n for n in fixture_names() if n.startswith("ssdlite") and "_0" in n])
def test_ssd_anchors_match_official(name):
    fx = load_fixture(name)
    model = mobilevitv3.create_model(fx["name"])
    torch.testing.assert_close(model.anchors(320, 320), torch.tensor(fx["anchors"][0]["values"][0]),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in fixture_names() if n.startswith("mobilevit")][:3])
def test_fixture_stage_statistics(name, official_checkpoint):
    """Each stage's output statistics match the official model's (localises a divergence to a stage)."""
    fx = load_fixture(name)
    model = mobilevitv3.create_model(fx["name"], weights=official_checkpoint(fx)).eval()
    with torch.no_grad():
        feats = model.forward_intermediates(inputs(fx)[0], intermediates_only=True)
    for got, ref in zip(feats, fx["stages"][0][1:]):
        assert list(got.shape) == ref["shape"]
        assert got.double().mean().item() == pytest.approx(ref["mean"], abs=1e-4)
        assert got.double().std().item() == pytest.approx(ref["std"], rel=1e-4)
