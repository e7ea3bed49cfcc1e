"""Speed paths that must not change what the models compute: BatchNorm folding, channels-last, the unfold-free
separable attention, torch.compile without graph breaks, gradient checkpointing, and the `bench` command."""
import json

import pytest
import torch
from torch import nn

import mobilevitv3
from mobilevitv3.cli import main
from mobilevitv3.layers import ConvNormAct
from mobilevitv3.layers.attention import LinearSelfAttention

# One of each kind: v1 family, v3 on v1, v2 family, v3 on v2, segmentation (both heads), detection.
SUBSET = ["mobilevit_xxs", "mobilevitv3_xxs", "mobilevitv2_050", "mobilevitv3_050",
          "deeplabv3_mobilevitv3_xxs", "pspnet_mobilevitv3_050", "ssdlite_mobilevitv3_050"]


def _outputs(out):
    return out if isinstance(out, tuple) else (out,)


def _model_with_running_stats(name: str) -> nn.Module:
    """A model whose BatchNorms hold non-trivial statistics (fresh ones are the identity, hiding folding bugs)."""
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


@pytest.mark.parametrize("name", SUBSET)
def test_fuse_matches_original_within_1e_5(name):
    model = _model_with_running_stats(name)
    fused = mobilevitv3.fuse(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        for ref, out in zip(_outputs(model(x)), _outputs(fused(x))):
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_conv_norm_act_in_eval_is_conv_then_batchnorm_then_silu():
    torch.manual_seed(0)
    cna = ConvNormAct(8, 16, 3, stride=2, bias=True)
    bn = cna.norm
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(2, 8, 15, 15)
    conv = torch.nn.functional.conv2d(x, cna.conv.weight, cna.conv.bias, stride=2, padding=1)
    normed = torch.nn.functional.batch_norm(conv, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps)
    with torch.no_grad():
        torch.testing.assert_close(cna.eval()(x), torch.nn.functional.silu(normed), rtol=1e-5, atol=1e-6)
    cna.train()(x).sum().backward()  # training mode normalises with the batch statistics
    assert bn.num_batches_tracked == 1 and cna.conv.weight.grad is not None


def test_fuse_leaves_the_original_untouched():
    model = _model_with_running_stats("mobilevit_xxs")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mobilevitv3.fuse(model)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", SUBSET)
def test_channels_last_gives_the_same_output(name):
    reference = _model_with_running_stats(name)
    fast = mobilevitv3.create_model(name).eval().to(memory_format=torch.channels_last)
    fast.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 96, 80)  # 3x3 / 3x2 maps at stride 32: the v1 block's resize path too
    with torch.no_grad():
        expected = _outputs(reference(x))
        for ref, out in zip(expected, _outputs(fast(x.contiguous(memory_format=torch.channels_last)))):
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevitv2_050"])
def test_layout_is_the_callers_choice(name):
    x = torch.randn(1, 3, 64, 64)
    model = mobilevitv3.create_model(name).eval()
    with torch.no_grad():
        plain = model.forward_intermediates(x, intermediates_only=True)  # NCHW in: NCHW all the way (no switch)
        model.to(memory_format=torch.channels_last)
        fast = model.forward_intermediates(x.contiguous(memory_format=torch.channels_last),
                                           intermediates_only=True)
    assert all(f.is_contiguous() for f in plain)
    assert all(f.is_contiguous(memory_format=torch.channels_last) for f in fast)


def _grid_attention(attn: LinearSelfAttention, grid: torch.Tensor) -> torch.Tensor:
    """Separable attention written out on a grid [B, d, P, N]: c = sum_N softmax_N(q) * k;  y = out(relu(v) * c)."""
    d = grid.shape[1]
    qkv = torch.einsum("oi,bipn->bopn", attn.qkv_proj.weight[:, :, 0, 0], grid) + attn.qkv_proj.bias[:, None, None]
    q, k, v = qkv[:, :1], qkv[:, 1:1 + d], qkv[:, 1 + d:]
    context = (torch.softmax(q, dim=-1) * k).sum(-1, keepdim=True)
    y = torch.einsum("oi,bipn->bopn", attn.out_proj.weight[:, :, 0, 0], torch.relu(v) * context)
    return y + attn.out_proj.bias[:, None, None]


@pytest.mark.parametrize("patch", [2, 3])
def test_linear_attention_on_the_map_equals_the_formula_on_the_unfolded_grid(patch):
    torch.manual_seed(0)
    attn = LinearSelfAttention(8, patch=patch).eval()
    b, d, nh, nw = 2, 8, 4, 5
    x = torch.randn(b, d, nh * patch, nw * patch)
    # unfold by hand: grid[b, c, r * patch + s, i * nw + j] = x[b, c, i * patch + r, j * patch + s]
    grid = x.reshape(b, d, nh, patch, nw, patch).permute(0, 1, 3, 5, 2, 4).reshape(b, d, patch * patch, nh * nw)
    with torch.no_grad():
        y = _grid_attention(attn, grid).reshape(b, d, patch, patch, nh, nw).permute(0, 1, 4, 2, 5, 3)
        torch.testing.assert_close(attn(x), y.reshape(x.shape), rtol=1e-5, atol=1e-6)


def test_linear_attention_grid_matches_the_formula():
    torch.manual_seed(0)
    attn = LinearSelfAttention(6).eval()
    x = torch.randn(2, 6, 4, 9)  # [B, d, P, N]
    with torch.no_grad():
        torch.testing.assert_close(attn(x), _grid_attention(attn, x), rtol=1e-5, atol=1e-6)


# AOT-eager backend: `fullgraph=True` fails on any graph break and AOTAutograd traces the graph, without paying for
# Inductor's code generation (minutes on two cores). Every registered model is checked by a script (BENCHMARKS.md).
@pytest.mark.parametrize("name", ["mobilevitv3_xxs", "mobilevitv2_050", "deeplabv3_mobilevitv3_050",
                                  "ssdlite_mobilevitv3_xxs"])
def test_compile_fullgraph_without_graph_breaks(name):
    torch._dynamo.reset()
    model = mobilevitv3.create_model(name).eval()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for ref, out in zip(_outputs(model(x)), _outputs(compiled(x))):
            torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("name", ["mobilevitv3_xxs", "mobilevitv3_050"])
def test_grad_checkpointing_gives_the_same_gradients(name):
    model = mobilevitv3.create_model(name).train()  # default dropout on: checkpointing must replay its masks
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for enable in (False, True):
        model.set_grad_checkpointing(enable)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        model(x).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-5, atol=1e-7, msg=n)


def test_bench_cli_reports_every_field(capsys, tmp_path):
    chart = tmp_path / "chart.png"
    code = main(["bench", "mobilevitv3_xxs", "--image-size", "64", "--warmup", "1", "--runs", "2",
                 "--throughput-batch", "2", "--throughput-runs", "1", "--train-runs", "1", "--threads", "1",
                 "--fuse", "--chart", str(chart)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report["results"]
    assert row["name"] == "mobilevitv3_xxs" and row["params"] == 1249448
    assert row["macs_official"] > 0 and row["macs_true"] > 0
    for key in ("latency_ms_mean", "latency_ms_median", "throughput_img_s", "train_img_s", "peak_memory_mb",
                "train_peak_memory_mb"):
        assert row[key] > 0, key
    assert report["config"]["fuse"] and report["environment"]["threads"] == 1
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_bench_cli_vs_timm_reports_ratios(capsys):
    pytest.importorskip("timm")
    code = main(["bench", "mobilevitv2_050", "--image-size", "64", "--warmup", "1", "--runs", "2", "--no-train",
                 "--threads", "1", "--vs", "timm"])
    assert code == 0
    (row,) = json.loads(capsys.readouterr().out)["results"]
    assert row["timm"]["name"] == "mobilevitv2_050" and row["timm"]["params"] == row["params"]
    assert row["vs_timm"]["latency_ms_median"] == pytest.approx(row["latency_ms_median"]
                                                                / row["timm"]["latency_ms_median"])


def test_bench_preset_official_keeps_explicit_flags(monkeypatch):
    import argparse

    from mobilevitv3.bench.timing import PRESETS
    from mobilevitv3.commands import bench
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    captured = {}
    monkeypatch.setattr(bench, "benchmark", lambda names, cfg: captured.setdefault("cfg", cfg) and {"results": []})
    bench.run(parser.parse_args(["x", "--preset", "official", "--runs", "7"]))
    cfg = captured["cfg"]
    assert cfg.runs == 7 and cfg.throughput_batch == PRESETS["official"]["throughput_batch"] == 100
    assert (cfg.batch_size, cfg.image_size, cfg.dtype, cfg.warmup) == (1, 256, "fp32", 10)


def test_bench_unknown_model_is_a_user_error(capsys):
    assert main(["bench", "mobilevit_xxxs", "--runs", "1"]) == 2
    assert "mobilevit_xxs" in capsys.readouterr().err
