"""`mobilevitv3` command line: a thin skin over the library.

Each subcommand lives in `commands/<name>.py` with `add_arguments(parser)` and `run(args)`; `run` returns a
JSON-able result (printed on stdout as JSON), a table (a string, printed as it is) or None. While a command runs,
everything else written to stdout (third-party converters and quantizers print progress there, some from C code)
goes to stderr, so stdout holds only the result and `... | jq` always works. A user error (`UserError` and its
subclasses) is one line on stderr and exit code 2, never a traceback; any other exception is a bug and shows its
traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import math
import os
import signal
import sys
import typing

from .errors import UserError

COMMANDS = {
    "list": "models, their exact parameters and MACs beside the reported figures",
    "ablation": "parameters and MACs of the paper's block ablation (MobileViTv1-S + the four v3 changes)",
    "convert": "convert an official release checkpoint to .safetensors",
    "train": "train a classifier, segmenter or detector",
    "eval": "evaluate a model on a dataset",
    "predict": "predict on image files",
    "gallery": "a picture of held-out scene predictions beside the ground truth (masks and boxes)",
    "bench": "latency / throughput benchmark (optionally against timm)",
    "export": "export to ONNX, TorchScript, ExportedProgram, CoreML, ExecuTorch, TFLite or OpenVINO",
    "quantize": "post-training INT8 quantization to ONNX, ExecuTorch or OpenVINO, checked against the float model",
}


class Parser(argparse.ArgumentParser):
    """argparse, with a misused flag reported in one line like every other user error (the full usage of `train`,
    one flag per config field, is 48 lines that bury the message); `--help` still shows it all."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen command's module is imported (fast start, heavy imports stay lazy)."""
    parser = Parser(prog="mobilevitv3", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(f".commands.{name}", __package__).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(next((a for a in argv if a in COMMANDS), None)).parse_args(argv)
    # Our progress at INFO; third-party chatter (coremltools' "Removing op", ...) only from WARNING up.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s",
                        stream=sys.stderr)
    logging.getLogger(__package__).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    # Importing ExecuTorch makes torch warn about an enum it registers (a deprecation inside ExecuTorch, nothing the
    # user can act on): without this an error of `--format executorch` would not be one line.
    logging.getLogger("torch.utils._pytree").setLevel(logging.DEBUG if args.verbose else logging.ERROR)
    try:
        with _stdout_to_stderr():
            result = importlib.import_module(f".commands.{args.command}", __package__).run(args)
    except UserError as e:   # CheckpointError, ExportError, DatasetError are UserErrors; anything else is a bug
        if args.verbose:
            raise
        print(f"mobilevitv3 {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:   # Ctrl-C, or a signal the trainer turned into a saved stop (`signum`)
        signum = getattr(e, "signum", signal.SIGINT)
        detail = f": {e}" if str(e) else ""
        print(f"mobilevitv3 {args.command}: interrupted ({signal.Signals(signum).name}){detail}", file=sys.stderr)
        return 128 + signum   # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    if result is not None:
        _print(result if isinstance(result, str) else json.dumps(_finite(result), indent=2, allow_nan=False))
    return 0


def _print(text: str) -> None:
    """Print the result; a reader that closed the pipe early (`| head`) is not an error of ours."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python would report the pipe again when it flushes stdout at exit: point stdout at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@contextlib.contextmanager
def _stdout_to_stderr():
    """Both Python's `sys.stdout` and file descriptor 1 point at stderr for the duration."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:          # no usable descriptors (an embedding host): Python-level redirection only
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _finite(value):
    """JSON has no NaN/inf: an undefined metric (no class present, no image) is printed as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
