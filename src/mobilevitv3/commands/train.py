"""`mobilevitv3 train [-c RECIPE] [--model NAME] [--data DIR|digits] [--epochs N] [--out DIR] [--resume] ...`

Every TrainConfig field is a `--field-name` flag; precedence defaults < recipe < flags. With `--resume`, the config
saved in OUT/last.pt is the base and flags given now override it (e.g. `--epochs` to extend a run). Under torchrun
every rank runs this; only rank 0 prints the summary.
"""
import argparse
import os
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..train.config import add_flags
    p.add_argument("-c", "--config", dest="recipe", default=None, metavar="RECIPE",
                   help="packaged recipe name (e.g. mobilevitv3_xxs.in1k) or a YAML file; default: "
                        "recipes/<model>.yaml when packaged, else the digits main job")
    add_flags(p)


def run(args: argparse.Namespace):
    from ..train import resolve, train
    from ..train.config import overrides_from_args
    from ..train.state import saved_config
    overrides = overrides_from_args(args)
    base = None
    resume = str(overrides.get("resume", "false")).lower() in ("true", "1", "yes")
    if resume:
        out = Path(overrides.get("out") or resolve(args.recipe, {k: v for k, v in overrides.items()
                                                                  if k != "resume"}).out)
        base, _ = saved_config(out / "last.pt")
    cfg = resolve(None if base else args.recipe, overrides, base=base)
    summary = train(cfg)
    return summary if int(os.environ.get("RANK", "0")) == 0 else None
