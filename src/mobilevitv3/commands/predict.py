"""`mobilevitv3 predict CHECKPOINT|NAME [--weights PATH] IMAGE...`: JSON, one entry per image (classification: top-k
classes, with ImageNet class names for `.in1k` models and the training class names for our own checkpoints;
segmentation: classes by pixel share; detection: boxes), and with `--out DIR` PNGs with the mask or boxes drawn."""
import argparse

from .eval import add_model_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=5, help="classes (or boxes, for detection) per image")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="detection: list and draw boxes at least this confident (default 0.3)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="segmentation/detection: write each image with its mask or boxes drawn as DIR/<image>.png")


def run(args: argparse.Namespace):
    from ..infer import predict
    return predict(args.model, weights=args.weights, images=args.images, top_k=args.top_k, device=args.device,
                   out=args.out, num_classes=args.num_classes, copy=args.copy, score_threshold=args.score_threshold)
