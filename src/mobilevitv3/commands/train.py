"""`mobilevitv3 train [-c RECIPE] [--model NAME] [--data DIR|digits] [--epochs N] [--out DIR] [--resume] ...`

Every TrainConfig field is a `--field-name` flag; precedence defaults < recipe < flags. With `--resume` (or in a
torchrun restart of the same job), the run's own config (OUT/last.pt's, else OUT/config.yaml) is the base and flags
given now override it (e.g. `--epochs` to extend a run). Under torchrun every rank runs this; only rank 0 prints
the summary.
"""
import argparse
import dataclasses
import os
import typing
from typing import Any, Literal

from ..train.config import FIELDS, HINTS, base_type


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", dest="recipe", default=None, metavar="RECIPE",
                   help="packaged recipe name (e.g. mobilevitv3_xxs.in1k) or a YAML file; default: "
                        "recipes/<model>.yaml when packaged, else the digits main job")
    add_flags(p)


def run(args: argparse.Namespace):
    from ..train import resolve_job, train
    summary = train(resolve_job(args.recipe, overrides_from_args(args)))
    return summary if int(os.environ.get("RANK", "0")) == 0 else None


def add_flags(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """One `--field-name` flag per TrainConfig field; unset flags stay out of the namespace (no override)."""
    group = parser.add_argument_group("training configuration (every TrainConfig field; overrides the recipe)")
    for name in FIELDS:
        if name in skip:
            continue
        hint, _ = base_type(HINTS[name])
        flag = "--" + name.replace("_", "-")
        default = FIELDS[name].default
        shown = "{}" if default is dataclasses.MISSING else default
        kind = "true/false" if hint is bool else "JSON" if hint is dict else "A,B" if typing.get_origin(hint) is tuple \
            else "|".join(typing.get_args(hint)) if typing.get_origin(hint) is Literal else ""
        group.add_argument(flag, dest=f"cfg_{name}", default=argparse.SUPPRESS, metavar=kind or name.upper(),
                           nargs="?" if hint is bool else None, const="true" if hint is bool else None,
                           help=f"default: {shown}")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {k.removeprefix("cfg_"): v for k, v in vars(args).items() if k.startswith("cfg_")}
