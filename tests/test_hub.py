"""The Hub form of a model on local folders only (nothing reaches the network): save_pretrained writes
config.json + model.safetensors + a model card; from_pretrained rebuilds the model bit-identically; hubconf.py
serves torch.hub.load(source="local")."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import mobilevitv3
from mobilevitv3 import UserError, hub

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name,kwargs", [("mobilevitv3_xxs.in1k", {"num_classes": 10, "flip_channels": True}),
                                         ("deeplabv3_mobilevitv3_050.voc", {}),
                                         ("mobilevitv3_050", {"features_only": True, "out_indices": (2, 4)})])
def test_hub_round_trip_is_bit_identical(tmp_path, name, kwargs):
    model = mobilevitv3.create_model(name, **kwargs).eval()
    hub.save_pretrained(model, tmp_path, metrics={"top1": 0.5})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    back = hub.from_pretrained(tmp_path)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out, again = model(x), back(x)
    for a, b in zip(out if isinstance(out, (list, tuple)) else [out], again if isinstance(again, (list, tuple))
                    else [again]):
        assert torch.equal(a, b)
    assert back.identity == model.identity
    assert mobilevitv3.load_model(str(tmp_path / "model.safetensors")).identity == model.identity


def test_hub_config_and_card_describe_the_model(tmp_path):
    model = mobilevitv3.create_model("mobilevitv3_xxs.in1k", flip_channels=True)
    hub.save_pretrained(model, tmp_path, metrics={"top1": 0.734})
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["arch"] == "mobilevitv3_xxs" and config["tag"] == "in1k" and config["num_classes"] == 1000
    assert config["preprocess"]["channel_order"] == "rgb"       # the model flips RGB to the weights' BGR itself
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\nlicense: other\nlicense_name: cvnets-license\n")
    assert "| top1 | 0.734 |" in card and "1,249,448" in card and "RGB" in card and "centre crop 256" in card


def test_hub_refuses_what_is_not_a_hub_folder(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        hub.from_pretrained(tmp_path)
    with pytest.raises(UserError, match="neither a local folder nor a Hub repo id"):
        hub.from_pretrained(str(tmp_path / "missing" / "deep" / "x"))


def test_hubconf_serves_torch_hub_load(tmp_path):
    model = torch.hub.load(str(REPO), "mobilevitv3_050", source="local", num_classes=3)
    assert model.num_classes == 3 and model.name == "mobilevitv3_050"
    hub.save_pretrained(model, tmp_path)
    back = torch.hub.load(str(REPO), "from_pretrained", str(tmp_path), source="local")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(back(x), model.eval()(x))


def test_train_writes_its_best_checkpoint_as_a_hub_folder(tmp_path):
    from PIL import Image

    from mobilevitv3.cli import main
    for split in ("train", "val"):
        for i, c in enumerate(("a", "b")):
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for k in range(2):
                Image.new("RGB", (36, 36), (230 * i, 230 * (1 - i), 40 * k)).save(tmp_path / "data" / split / c /
                                                                                  f"{k}.png")
    argv = ["train", "--model", "mobilevitv3_xxs", "--image-size", "32", "--batch-size", "4", "--threads", "1",
            "--workers", "0", "--epochs", "1", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
            "--hub-folder", str(tmp_path / "hubdir")]
    assert main(argv) == 0
    best = mobilevitv3.load_model(str(tmp_path / "run" / "best.pt")).eval()
    back = hub.from_pretrained(tmp_path / "hubdir")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(back(x), best(x))
    assert back.identity.class_names == ("a", "b")
    card = (tmp_path / "hubdir" / "README.md").read_text()
    assert "license_name: unspecified" in card and "| val_top1 |" in card
