"""The Hugging Face Hub form of a model, in huggingface_hub's conventions: a folder with `config.json` (the model's
identity and build arguments: everything needed to rebuild it), `model.safetensors` (the weights, with the same
identity in the header, so `load_model` reads the file alone too) and `README.md` (a generated model card).

`save_pretrained` / `from_pretrained` work on local folders without huggingface_hub installed; a repo id (not a
local folder) in `from_pretrained`, and `push_to_hub`, need it (`pip install mobilevitv3[hub]`).
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from .errors import UserError
from .models import identity_record, load_model, model_from_identity
from .models.identity import ModelIdentity
from .weights import atomic_write, load_pickle, read_weights, save_safetensors
from .weights.io import IDENTITY_KEY

log = logging.getLogger(__name__)
CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"
# The official releases ship their weights under the ml-cvnets licence (timm labels it 'cvnets-license').
OFFICIAL_LICENSE = "cvnets-license"
HUB_LICENSES = {"mit", "apache-2.0", "bsd-3-clause", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "openrail"}


def save_pretrained(model: nn.Module, save_directory: str | Path, *, metrics: dict[str, Any] | None = None,
                    license: str = OFFICIAL_LICENSE) -> Path:
    """Write `model` as a Hub folder: config.json, model.safetensors, README.md (architecture, preprocessing,
    `metrics` of the run, the weights' `license`). Returns the folder."""
    if not isinstance(getattr(model, "identity", None), ModelIdentity) or model.identity.arch is None:
        raise UserError("save_pretrained needs a model built by mobilevitv3.create_model (it records its name)")
    folder = Path(save_directory)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} exists and is not a folder")
    record = identity_record(model)
    config = {**record, "library_name": "mobilevitv3", "license": license, "metrics": dict(metrics or {})}
    save_safetensors(model, folder / WEIGHTS, metadata={IDENTITY_KEY: json.dumps(record), "format": "pt"})
    atomic_write(folder / CONFIG, lambda f: f.write((json.dumps(config, indent=2) + "\n").encode()))
    card = model_card(model, metrics=metrics, license=license)
    atomic_write(folder / CARD, lambda f: f.write(card.encode()))
    log.info("wrote %s as a Hub folder in %s", model.identity.name, folder)
    return folder


def save_run(checkpoint: str | Path, save_directory: str | Path) -> Path:
    """A training run's `best.pt` as a Hub folder, with the metrics of its best epoch. The licence is the official
    weights' when the run started from a file (fine-tuning), else left for the owner to state."""
    saved = load_pickle(Path(checkpoint))
    metrics = {k: v for k, v in (saved.get("metrics") or {}).items() if isinstance(v, (int, float, str))}
    started_from = (saved.get("config") or {}).get("weights")
    return save_pretrained(load_model(str(checkpoint)), save_directory, metrics=metrics,
                           license=OFFICIAL_LICENSE if started_from else "unspecified")


def from_pretrained(path_or_repo_id: str | Path, *, revision: str | None = None,
                    cache_dir: str | Path | None = None) -> nn.Module:
    """The model of a `save_pretrained` folder (a local folder, or a Hub repo id downloaded through
    huggingface_hub), bit-identical to the one saved, in eval mode."""
    folder = Path(path_or_repo_id)
    if not folder.is_dir():
        folder = _download(str(path_or_repo_id), revision, cache_dir)
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise UserError(f"{folder} is not a mobilevitv3 Hub folder: no {name}")
    try:
        config = json.loads((folder / CONFIG).read_text())
        ident = ModelIdentity.from_dict(config)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{folder / CONFIG} is not a mobilevitv3 config: {e}") from None
    model = model_from_identity(config, weights=read_weights(folder / WEIGHTS), num_classes=ident.num_classes)
    return model.eval()


def push_to_hub(model: nn.Module, repo_id: str, *, metrics: dict[str, Any] | None = None,
                license: str = OFFICIAL_LICENSE, private: bool = False, token: str | None = None,
                commit_message: str = "Upload mobilevitv3 model") -> str:
    """`save_pretrained` into a temporary folder, then upload it to the Hub repo `repo_id` (created if missing).
    Returns the commit URL."""
    hub = _hub()
    api = hub.HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, metrics=metrics, license=license)
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
    return str(info)


def model_card(model: nn.Module, *, metrics: dict[str, Any] | None = None, license: str = OFFICIAL_LICENSE) -> str:
    """A Hub model card: YAML front matter (licence, library, tags) and the model's architecture, input
    convention, metrics of its run and weights licence."""
    ident: ModelIdentity = model.identity
    pre = ident.preprocess
    params = sum(p.numel() for p in model.parameters())
    lic = f"license: {license}\n" if license in HUB_LICENSES else f"license: other\nlicense_name: {license}\n"
    pipeline = {"classification": "image-classification", "segmentation": "image-segmentation",
                "detection": "object-detection"}[ident.task]
    resize = "x".join(map(str, pre.resize)) if isinstance(pre.resize, tuple) else f"shorter side {pre.resize}"
    lines = ["---", f"{lic}library_name: mobilevitv3", f"pipeline_tag: {pipeline}",
             "tags:", "- mobilevitv3", f"- {ident.task}", "---", "", f"# {ident.name}", "",
             f"MobileViT-family {ident.task} model ({ident.family}-based block), built with the `mobilevitv3` "
             "package, which is exact to the official MobileViTv3 release.", "",
             "## Model", f"- architecture: `{ident.arch}`" + (f", release tag `{ident.tag}`" if ident.tag else ""),
             f"- classes: {ident.num_classes}" + (f" ({', '.join(ident.class_names[:5])}, ...)"
                                                  if ident.class_names else ""),
             f"- parameters: {params:,}", "",
             "## Input", f"- channel order: {pre.channel_order.upper()}, values in [0, 1], mean {list(pre.mean)}, "
             f"std {list(pre.std)}",
             f"- resize: {resize} ({pre.interpolation})" + (f", centre crop {pre.crop}" if pre.crop else ""), "",
             "## Metrics of the run"]
    lines += (["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in metrics.items()]
              if metrics else ["(none recorded)"])
    lines += ["", "## Use", "```python", "import mobilevitv3.hub", "",
              "model = mobilevitv3.hub.from_pretrained(\"PATH_OR_REPO_ID\")", "```", "",
              "## Licence of the weights", f"{license}" + (" (the official release's weights licence)"
                                                          if license == OFFICIAL_LICENSE else ""), ""]
    return "\n".join(lines)


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise UserError("the Hub needs huggingface_hub: pip install 'mobilevitv3[hub]'") from None
    return huggingface_hub


def _download(repo_id: str, revision: str | None, cache_dir: str | Path | None) -> Path:
    if repo_id.count("/") != 1 or repo_id.startswith(("/", ".")):
        raise UserError(f"{repo_id} is neither a local folder nor a Hub repo id (owner/name)")
    path = _hub().snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                    allow_patterns=[CONFIG, WEIGHTS, CARD])
    return Path(path)
