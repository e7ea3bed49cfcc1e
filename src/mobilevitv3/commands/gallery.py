"""`mobilevitv3 gallery CHECKPOINT... --out PICTURE.png`: the first held-out digit scenes in rows; per segmentation
checkpoint the true and the predicted mask, per detection checkpoint the true and the predicted boxes (drawn as
`predict --out` draws them). JSON: the picture, the scene indices, the column titles."""
import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                   help="segmentation / detection checkpoints trained on the scenes (train's best.pt)")
    p.add_argument("--out", required=True, metavar="PICTURE.png")
    p.add_argument("--scenes", type=int, default=6, help="validation scenes, one per row (the first N)")
    p.add_argument("--zoom", type=int, default=2, help="enlarge each panel this many times (nearest)")
    p.add_argument("--device", default="auto")


def run(args: argparse.Namespace):
    from ..infer.gallery import scene_gallery
    return scene_gallery(args.checkpoints, out=args.out, scenes=args.scenes, zoom=args.zoom, device=args.device)
