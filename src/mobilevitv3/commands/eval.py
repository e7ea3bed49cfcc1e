"""`mobilevitv3 eval CHECKPOINT|NAME [--weights PATH] --data DIR|digits|scenes`: one JSON object with the task's
metrics (classification: top1, top5, images; segmentation: miou; detection: COCO map), using the preprocessing the
model's identity gives (the tag's, or the sizes saved in a checkpoint of `mobilevitv3 train`)."""
import argparse


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The model arguments `eval`, `predict`, `export` (and `quantize`) share."""
    p.add_argument("model", metavar="CHECKPOINT|NAME",
                   help="one of our checkpoints alone (best.pt, last.pt, a converted .safetensors), or an "
                        "architecture[.tag] with --weights")
    p.add_argument("--weights", default=None, help="official / timm / .safetensors weights, or our best.pt/last.pt, "
                                                   "for an architecture NAME")
    p.add_argument("--num-classes", type=int, default=None,
                   help="class count of a bare state dict (default: from the file, else the tag)")
    p.add_argument("--ema", dest="copy", action="store_const", const="ema", default=None,
                   help="load the EMA copy of a file holding raw and EMA weights (our last.pt); default: raw")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--data", required=True, help="data root (val/ or class folders; VOC/ADE20K/COCO layouts for "
                                                 "dense tasks), or `digits` / `scenes`")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")


def run(args: argparse.Namespace):
    from ..infer import evaluate
    return evaluate(args.model, weights=args.weights, data=args.data, batch_size=args.batch_size,
                    workers=args.workers, device=args.device, amp=args.amp, num_classes=args.num_classes,
                    copy=args.copy)
