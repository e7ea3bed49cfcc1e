"""`mobilevitv3 predict NAME --weights PATH IMAGE...`: JSON, one entry per image (classification: top-k classes,
with ImageNet class names for `.in1k` models and the training class names for our own checkpoints; segmentation:
classes by pixel share; detection: boxes), and with `--out DIR` PNGs with the mask or boxes drawn."""
import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="architecture[.tag], e.g. mobilevitv3_xxs.in1k")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--weights", required=True, help="official / timm / .safetensors weights, or our best.pt")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="segmentation/detection: write each image with its mask or boxes drawn as DIR/<image>.png")


def run(args: argparse.Namespace):
    from ..infer import predict
    return predict(args.name, weights=args.weights, images=args.images, top_k=args.top_k, device=args.device,
                   out=args.out)
