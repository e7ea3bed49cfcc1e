"""`mobilevitv3 list [PATTERN]`: every model with exact parameters and MACs beside the reported figures."""
import argparse

from ..bench.zoo import describe, table
from ..errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern, e.g. 'mobilevitv3_*'")
    p.add_argument("--image-size", type=int, default=256, help="square input size for the MAC count")
    p.add_argument("--tags", action="store_true", help="list architecture.tag names (official release settings)")
    p.add_argument("--json", action="store_true", help="JSON for machines instead of a table")


def run(args: argparse.Namespace):
    if not 32 <= args.image_size <= 4096:
        raise UserError(f"--image-size must be in 32..4096 (one pixel at stride 32), got {args.image_size}")
    rows = describe(args.pattern, image_size=args.image_size, tags=args.tags)
    if not rows:
        raise UserError(f"no model matches {args.pattern!r}; see `mobilevitv3 list`")
    if args.json:
        return rows
    return table(rows)
