"""Loading weights: every accepted layout, every refusal, and the CLI that converts them."""
import json

import pytest
import torch

import mobilevitv3
from mobilevitv3 import CheckpointError
from mobilevitv3.cli import main
from official import inputs, load_fixture, official_state_dict

FX = "mobilevitv3_xxs.in1k"


def _logits(model, fx):
    with torch.no_grad():
        return model.eval()(inputs(fx)[1])


@pytest.fixture(scope="module")
def fx():
    return load_fixture(FX)


@pytest.mark.parametrize("wrap", ["raw", "state_dict", "model", "module_prefix"])
def test_official_checkpoint_layouts_load(tmp_path, fx, wrap):
    sd = official_state_dict(fx)
    obj = {"raw": sd, "state_dict": {"state_dict": sd, "epoch": 3}, "model": {"model": sd},
           "module_prefix": {f"module.{k}": v for k, v in sd.items()}}[wrap]
    torch.save(obj, tmp_path / "ckpt.pt")
    model = mobilevitv3.create_model(FX, weights=tmp_path / "ckpt.pt")
    torch.testing.assert_close(_logits(model, fx), torch.tensor(fx["outputs"][1]["values"]), **fx["tolerance"])


def test_safetensors_round_trip_through_convert_cli(tmp_path, fx, capsys):
    torch.save(official_state_dict(fx), tmp_path / "official.pt")
    out = tmp_path / "xxs.safetensors"
    assert main(["convert", str(tmp_path / "official.pt"), FX, "-o", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"] == fx["param_count"]
    model = mobilevitv3.create_model(FX, weights=out)
    torch.testing.assert_close(_logits(model, fx), torch.tensor(fx["outputs"][1]["values"]), **fx["tolerance"])


class Payload:  # a pickle that would run code on load if it were unpickled without weights_only
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_with_code_is_refused_not_executed(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "evil": Payload()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        mobilevitv3.create_model(FX, weights=path)
    assert "pwned" not in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_corrupt_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable"):
        mobilevitv3.create_model(FX, weights=path)


def test_corrupt_safetensors_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(CheckpointError, match="safetensors"):
        mobilevitv3.create_model(FX, weights=path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        mobilevitv3.create_model(FX, weights=tmp_path / "nope.pt")


def test_mismatched_checkpoint_names_counts_and_keys_and_loads_nothing(tmp_path, fx):
    torch.save(official_state_dict(fx), tmp_path / "xxs.pt")
    model = mobilevitv3.create_model("mobilevitv3_xs.in1k")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"does not fit mobilevitv3_xs.in1k: .*\d+ mis-shaped "
                                              r"\(stages.0.0.expand.conv.weight \[32, 16, 1, 1\] vs \[64, 16, 1, 1\]"):
        mobilevitv3.create_model("mobilevitv3_xs.in1k", weights=tmp_path / "xxs.pt")
    sd = official_state_dict(fx)
    sd.pop("classifier.fc.bias")
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match=r"1 missing \(fc.bias\); 1 unexpected \(extra.weight\)"):
        mobilevitv3.create_model(FX, weights=tmp_path / "partial.pt")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_fine_tuning_resets_only_the_classifier(tmp_path, fx):
    torch.save(official_state_dict(fx), tmp_path / "ckpt.pt")
    full = mobilevitv3.create_model(FX, weights=tmp_path / "ckpt.pt").eval()
    tuned = mobilevitv3.create_model(FX, num_classes=10, weights=tmp_path / "ckpt.pt").eval()
    x = inputs(fx)[1]
    with torch.no_grad():
        torch.testing.assert_close(full.forward_features(x), tuned.forward_features(x))
        assert tuned(x).shape == (1, 10)


def test_own_checkpoint_with_custom_classes_keeps_its_classifier(tmp_path):
    model = mobilevitv3.create_model("mobilevitv3_xxs", num_classes=10).eval()
    torch.save({"model": model.state_dict(), "epoch": 1}, tmp_path / "best.pt")
    again = mobilevitv3.create_model("mobilevitv3_xxs", num_classes=10, weights=tmp_path / "best.pt").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), again(x))


@pytest.mark.parametrize("name", ["mobilevit_xxs", "mobilevit_s", "mobilevitv2_050", "mobilevitv2_100"])
def test_timm_weights_load_and_match_timm(tmp_path, name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ref = timm.create_model(name, pretrained=False).eval()
    for m in ref.modules():  # non-trivial BN statistics so that a wrong mapping shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "timm.pth")
    ours = mobilevitv3.create_model(name, weights=tmp_path / "timm.pth").eval()
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-4)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="did you mean mobilevitv3_xxs"):
        mobilevitv3.create_model("mobilevitv3_xxx")
    with pytest.raises(ValueError, match="unknown tag .*did you mean"):
        mobilevitv3.create_model("mobilevitv3_xxs.in1")


def test_unknown_keyword_is_an_error_naming_valid_ones():
    with pytest.raises(ValueError, match="output_strid.*did you mean output_stride"):
        mobilevitv3.create_model("mobilevitv3_xxs", output_strid=16)


def test_tag_carries_official_preprocessing():
    assert mobilevitv3.get_tag("mobilevitv3_xs.in1k").preprocess.channel_order == "bgr"
    v2 = mobilevitv3.get_tag("mobilevitv3_050.in1k").preprocess
    assert (v2.channel_order, v2.interpolation, v2.resize, v2.crop) == ("rgb", "bicubic", 288, 256)
    assert mobilevitv3.get_tag("deeplabv3_mobilevitv3_050.ade20k").output_stride == 8


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing.pt"), FX, "-o", str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not found" in err


def test_list_json_reports_counted_figures(capsys):
    assert main(["list", "mobilevitv3_xxs", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["params"] == 1_249_448 and row["macs"] == 289_022_952
    assert row["reported_params_m"] == 1.2
