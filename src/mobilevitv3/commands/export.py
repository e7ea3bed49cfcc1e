"""`mobilevitv3 export CHECKPOINT|NAME [--weights PATH] --format FORMAT -o OUT`: write a deployable file, check it
against the eager model with the format's runtime, print the report (max abs difference, runtime, embedded
preprocessing)."""
import argparse

from .eval import add_model_arguments

FORMAT_NAMES = ("onnx", "torchscript", "exported-program", "coreml", "executorch", "tflite", "openvino")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--format", required=True, metavar="FORMAT",
                   help=f"one of {', '.join(FORMAT_NAMES)}")
    p.add_argument("-o", "--output", required=True,
                   help="output file (.mlpackage folder for coreml; .xml for openvino, its weights in the .bin "
                        "beside it)")
    p.add_argument("--image-size", type=int, nargs="+", metavar=("H", "W"),
                   help="input height and width (one value: square); default: the size the checkpoint was "
                        "evaluated at (its training run's, or the tag's), else 256")
    p.add_argument("--batch-size", type=int, default=1, help="static batch size (default 1)")
    p.add_argument("--dynamic-batch", action="store_true", help="any batch size (checked at 1 and 3)")
    p.add_argument("--dynamic-size", action="store_true",
                   help="onnx, exported-program, openvino: any height/width that is a multiple of the model's "
                        "size step")
    p.add_argument("--fuse", action="store_true", help="fold BatchNorm into the convolutions first")
    p.add_argument("--fp16", action="store_true", help="float16 weights and input")
    p.add_argument("--no-verify", action="store_true", help="report the difference but keep the file whatever it is")


def run(args: argparse.Namespace) -> dict:
    from ..errors import UserError
    from ..export import export
    from ..infer import load
    size = args.image_size
    if size is not None and len(size) not in (1, 2):
        raise UserError(f"--image-size takes H W or one value, got {len(size)} values")
    model, _ = load(args.model, args.weights, num_classes=args.num_classes, copy=args.copy, untrained=True)
    return export(model, args.format, args.output, image_size=None if size is None else tuple(size * (3 - len(size))),
                  batch_size=args.batch_size, dynamic_batch=args.dynamic_batch, dynamic_size=args.dynamic_size,
                  fuse=args.fuse, fp16=args.fp16, verify=not args.no_verify)
