"""`mobilevitv3.optimize`: the fast inference path computes what the eager model computes (within 1e-4 of the
largest output in fp32), for each family and task, with non-trivial BatchNorm statistics so that folding bugs show;
precision="auto" takes the measured faster of fp32 and bf16 once per machine (the measurement injected here: tests
never time), caches it, and bf16 is only used where the CPU has it."""
import json

import pytest
import torch
from torch import nn

import mobilevitv3
from mobilevitv3.errors import UserError

pytest.importorskip("onnxruntime")
# precision="auto" loads OpenVINO on a CPU with bf16: these run in their own process (scripts/test.sh).
pytestmark = pytest.mark.openvino

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
    fast = mobilevitv3.optimize(model, image_size=SIZE, threads=1, precision="fp32")
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


# ---- precision ------------------------------------------------------------------------------------------------------
def test_cpu_flags_are_read_from_cpuinfo_never_assumed(tmp_path):
    from mobilevitv3.export import cpu
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    assert "avx512_bf16" in cpu.cpu_flags(str(info)) and "amx_bf16" not in cpu.cpu_flags(str(info))
    assert cpu.cpu_flags(str(tmp_path / "missing")) == set()


def test_precision_bf16_without_native_bf16_is_a_user_error(monkeypatch):
    from mobilevitv3.export import cpu
    monkeypatch.setattr(cpu, "cpu_flags", lambda cpuinfo="/proc/cpuinfo": {"avx512f"})
    with pytest.raises(UserError, match="needs a CPU with native bf16"):
        mobilevitv3.optimize(mobilevitv3.create_model("mobilevitv3_xxs"), image_size=SIZE, precision="bf16")
    fast = mobilevitv3.optimize(mobilevitv3.create_model("mobilevitv3_xxs"), image_size=SIZE, threads=1)
    assert fast.backend == "onnxruntime"   # auto on a CPU without bf16: fp32, nothing measured


def test_unknown_precision_is_a_user_error():
    with pytest.raises(UserError, match="unknown optimize precision"):
        mobilevitv3.optimize(mobilevitv3.create_model("mobilevitv3_xxs"), precision="int4")


def test_auto_takes_the_measured_faster_path_and_caches_it(monkeypatch):
    pytest.importorskip("openvino")
    from mobilevitv3.export import bf16, cpu
    monkeypatch.setattr(cpu, "cpu_flags", lambda cpuinfo="/proc/cpuinfo": {"avx512_bf16"})
    speeds = {"onnxruntime": 5.0, "openvino-bf16": 3.1}
    timed = []

    def fake_measure(runs, example):
        assert sorted(runs) == sorted(speeds) and example.shape[:2] == (1, 3)   # batch-1 latency
        timed.append(1)
        return dict(speeds)
    monkeypatch.setattr(bf16, "measure", fake_measure)
    model = _trained_looking("mobilevitv3_xxs")
    fast = mobilevitv3.optimize(model, image_size=SIZE, threads=1)
    assert fast.backend == "openvino-bf16" and len(timed) == 1
    cache = json.loads(bf16.cache_path().read_text())
    (entry,) = cache.values()
    assert entry["choice"] == "openvino-bf16" and entry["ms"] == speeds
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(x)
    assert (fast(x) - ref).abs().max().item() <= bf16.BF16_TOLERANCE * max(1.0, ref.abs().max().item())
    again = mobilevitv3.optimize(model, image_size=SIZE, threads=1)
    assert again.backend == "openvino-bf16" and len(timed) == 1      # the cached choice, not measured again
    speeds["openvino-bf16"] = 6.0                                     # another size is another measurement
    assert mobilevitv3.optimize(model, image_size=2 * SIZE, threads=1).backend == "onnxruntime" and len(timed) == 2
    forced = mobilevitv3.optimize(model, image_size=SIZE, threads=1, precision="fp32")
    assert forced.backend == "onnxruntime" and len(timed) == 2
