"""`mobilevitv3 convert OFFICIAL.pt NAME -o OUT.safetensors`: an official (or timm) checkpoint -> our layout."""
import argparse
import json
from pathlib import Path

from ..bench.counting import param_count
from ..errors import UserError
from ..models import create_model, identity_record
from ..weights import save_safetensors
from ..weights.io import IDENTITY_KEY


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="official checkpoint_ema_best.pt, a state dict, or timm weights")
    p.add_argument("name", help="architecture[.tag] the checkpoint belongs to, e.g. mobilevitv3_xxs.in1k")
    p.add_argument("-o", "--output", required=True, help="output .safetensors path")
    p.add_argument("--num-classes", type=int, default=None, help="class count (default: from the checkpoint)")
    p.add_argument("--ema", dest="copy", action="store_const", const="ema", default=None,
                   help="convert the EMA copy of a file holding raw and EMA weights; default: raw")


def run(args: argparse.Namespace):
    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise UserError(f"output must end in .safetensors, got {out}")
    model = create_model(args.name, num_classes=args.num_classes, weights=args.checkpoint, copy=args.copy)
    try:   # the identity travels in the header: `eval`/`predict`/`export` take the file alone
        save_safetensors(model, out, {IDENTITY_KEY: json.dumps(identity_record(model))})
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    return {"name": args.name, "output": str(out), "params": param_count(model),
            "tensors": len(model.state_dict())}
