"""`mobilevitv3 eval NAME --weights PATH --data DIR|digits`: one JSON object with the task's metrics (classification:
top1, top5, images) using the tag's preprocessing, or the sizes saved in a checkpoint of `mobilevitv3 train`."""
import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="architecture[.tag], e.g. mobilevitv3_xxs.in1k")
    p.add_argument("--weights", required=True, help="official / timm / .safetensors weights, or our best.pt/last.pt")
    p.add_argument("--data", required=True, help="data root (val/ or class folders; VOC/COCO layouts for dense "
                                                 "tasks) or `digits`")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")


def run(args: argparse.Namespace):
    from ..infer import evaluate
    return evaluate(args.name, weights=args.weights, data=args.data, batch_size=args.batch_size,
                    workers=args.workers, device=args.device, amp=args.amp)
