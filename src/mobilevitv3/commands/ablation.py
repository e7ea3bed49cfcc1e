"""`mobilevitv3 ablation`: parameters and MACs of the paper's block ablation rows."""
import argparse

from ..bench.zoo import ablation, table
from ..errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace):
    if not 32 <= args.image_size <= 4096:
        raise UserError(f"--image-size must be in 32..4096 (one pixel at stride 32), got {args.image_size}")
    rows = ablation(args.image_size)
    if args.json:
        return rows
    return table(rows)
