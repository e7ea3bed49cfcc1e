"""`mobilevitv3 quantize CHECKPOINT|NAME [--weights W] --calib DATA [--calib-images N] --format FORMAT -o OUT
[--method percentile|minmax|entropy] [--max-drop POINTS [--val DATA]] [--no-speed-check]`, FORMAT one of onnx,
executorch, openvino: post-training static INT8 (per-channel symmetric weights, activations calibrated on N images of
DATA read through the model's own evaluation transform); the file is checked in its runtime (logit SNR against the
float model) before it is kept, then timed against the runtime's float path (one warning line where INT8 is the
slower there; skipped with --no-speed-check, which saves ExecuTorch a second, float lowering).
`eval`/`predict` take the written file in place of a checkpoint."""
import argparse

from .eval import add_model_arguments

FORMAT_NAMES = ("onnx", "executorch", "openvino")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--calib", default=None, metavar="DATA",
                   help="calibration data as for train: `digits`, `scenes`, an ImageFolder, a VOC/ADE20K/COCO root "
                        "(its validation split is read, through the model's evaluation transform); optional for a "
                        "`train --qat` checkpoint (its trained ranges are used)")
    p.add_argument("--calib-images", type=int, default=256, metavar="N", help="calibration images (default 256)")
    p.add_argument("--format", required=True, metavar="FORMAT", help=f"one of {', '.join(FORMAT_NAMES)}")
    p.add_argument("-o", "--output", required=True, help="output file (.onnx / .pte / .xml)")
    p.add_argument("--method", default=None, choices=("percentile", "minmax", "entropy"),
                   help="activation calibration. onnx and executorch: percentile (default: the 99.9999th percentile "
                        "of |x|, within 0.3 top-1 / 0.01 mIoU / 0.01 mAP of fp32 on the embedded data "
                        "(BENCHMARKS.md); a degenerate tensor falls back to its min/max), minmax, or entropy (onnx "
                        "only). openvino: NNCF's "
                        "default (mean of per-image min/max) unless percentile (NNCF MEAN_QUANTILE) or minmax "
                        "(NNCF MINMAX) is given")
    p.add_argument("--max-drop", type=float, default=None, metavar="POINTS",
                   help="openvino, classifiers: the largest top-1 drop allowed on the validation data; NNCF keeps the "
                        "layers that cost most in float until the measured drop is within it")
    p.add_argument("--val", default=None, metavar="DATA", help="validation data for --max-drop, read like --calib "
                   "(its validation split, every image); default: the --calib data")
    p.add_argument("--image-size", type=int, default=None, metavar="S",
                   help="square evaluation (and graph) size; default: the checkpoint's or the tag's")
    p.add_argument("--no-speed-check", dest="speed_check", action="store_false",
                   help="do not time the file against the runtime's float path (ExecuTorch lowers a float program "
                        "for it, which doubles the command's time); the report then has no `speed`")


def run(args: argparse.Namespace) -> dict:
    from ..infer.quantization import quantize_from
    return quantize_from(args.model, weights=args.weights, calib=args.calib, calib_images=args.calib_images,
                         fmt=args.format, out=args.output, method=args.method, num_classes=args.num_classes,
                         copy=args.copy, image_size=args.image_size, max_drop=args.max_drop, val=args.val,
                         speed_check=args.speed_check)
