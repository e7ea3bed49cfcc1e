"""`mobilevitv3 ablation`: parameters and MACs of the paper's block ablation rows."""
import argparse

from ..bench.zoo import ablation, table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace):
    rows = ablation(args.image_size)
    if args.json:
        return rows
    print(table(rows))
    return None
