"""A picture of held-out scene predictions beside their ground truth (the library side of `mobilevitv3 gallery`).

Rows are the first validation scenes (data/scenes.py, with the scene settings the checkpoints were trained on).
Each segmentation checkpoint adds two columns, the true mask and its predicted mask; each detection checkpoint the
true boxes and its boxes. The predictions are `predict`'s own `--out` overlays and the ground truth is drawn by the
same functions, so the two columns compare like with like.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from ..data.scenes import SCENE_CLASSES, Scene, SceneSpec, make_scene, scene_spec
from ..errors import UserError
from ..tasks.detection import draw_boxes
from ..tasks.segmentation import overlay
from .load import load
from .run import predict

log = logging.getLogger(__name__)
HEADER = 14         # pixels of the title strip above the columns


def scene_gallery(checkpoints: list[str], *, out: str, scenes: int = 6, zoom: int = 2,
                  device: str = "auto") -> dict[str, Any]:
    """Write the picture to `out` (.png) and return {"picture", "scenes" (validation indices), "columns"}."""
    if not 1 <= scenes <= 64 or not 1 <= zoom <= 8:
        raise UserError(f"--scenes must be in 1..64 and --zoom in 1..8, got {scenes} and {zoom}")
    if Path(out).suffix.lower() != ".png":
        raise UserError(f"--out must name a .png file, got {out}")
    tasks, spec = _check_checkpoints(checkpoints, device)
    drawn = [make_scene(spec, "val", i) for i in range(min(scenes, spec.val_scenes))]
    columns: list[tuple[str, list[Image.Image]]] = [("scene", [Image.fromarray(s.image) for s in drawn])]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, s in enumerate(drawn):
            paths.append(str(Path(tmp) / f"val_{i:05d}.png"))
            Image.fromarray(s.image).save(paths[-1])
        for k, (checkpoint, task) in enumerate(zip(checkpoints, tasks)):
            results = predict(checkpoint, images=paths, out=str(Path(tmp) / f"model{k}"), device=device)
            predicted = [Image.open(r["overlay"]).convert("RGB") for r in results]
            columns += [("true " + ("mask" if task == "segmentation" else "boxes"), [_truth(s, task) for s in drawn]),
                        (f"{Path(checkpoint).parent.name or checkpoint}", predicted)]
    picture = _grid(columns, zoom)
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        picture.save(out)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    log.info("wrote %s: %d held-out scenes x %d columns", out, len(drawn), len(columns))
    return {"picture": out, "scenes": list(range(len(drawn))), "columns": [name for name, _ in columns]}


def _check_checkpoints(checkpoints: list[str], device: str) -> tuple[list[str], SceneSpec]:
    """Each checkpoint's task; all must be dense models trained on the same scene set, which is returned."""
    if not checkpoints:
        raise UserError("give at least one segmentation or detection checkpoint trained on the scenes")
    tasks, specs = [], set()
    for checkpoint in checkpoints:
        model, settings = load(checkpoint, device=device)
        names = settings.task_options.get("classes") or list(model.identity.class_names or [])
        if model.task not in ("segmentation", "detection") or list(names) != SCENE_CLASSES:
            raise UserError(f"{checkpoint} is a {model.task} model of classes {list(names)[:4]}...; the gallery "
                            f"needs segmentation or detection checkpoints trained on the scenes")
        tasks.append(model.task)
        specs.add(scene_spec(settings.task_options))
    if len(specs) > 1:
        raise UserError("the checkpoints were trained on different scene settings (task_options.scenes); the rows "
                        "of one picture must be the same scenes")
    return tasks, specs.pop()


def _truth(scene: Scene, task: str) -> Image.Image:
    """The ground truth drawn as `predict --out` draws a prediction."""
    rgb = torch.from_numpy(scene.image).permute(2, 0, 1).contiguous()      # [H, W, 3] -> [3, H, W]
    if task == "segmentation":
        return overlay(rgb, torch.from_numpy(scene.mask).long(), len(SCENE_CLASSES), skip_background=True)
    return draw_boxes(rgb, torch.from_numpy(scene.boxes), torch.from_numpy(scene.labels), None, SCENE_CLASSES)


def _grid(columns: list[tuple[str, list[Image.Image]]], zoom: int) -> Image.Image:
    """Columns side by side, each panel enlarged `zoom`x (nearest: pixels stay pixels), titles on top."""
    w, h = (v * zoom for v in columns[0][1][0].size)
    rows = len(columns[0][1])
    picture = Image.new("RGB", (w * len(columns), HEADER + h * rows), "white")
    draw = ImageDraw.Draw(picture)
    for c, (title, panels) in enumerate(columns):
        draw.text((c * w + 3, 1), title, fill="black")
        for r, panel in enumerate(panels):
            picture.paste(panel.resize((w, h), Image.NEAREST), (c * w, HEADER + r * h))
    return picture
