"""Inference from files: one loader for a model from a checkpoint (ours, official, timm) or an exported file with
its evaluation settings (`load`), its metrics on a data set (`evaluate`), its predictions on images (`predict`)
and INT8 files calibrated on its own data (`quantize_from`)."""
from .load import load
from .run import evaluate, predict

__all__ = ["evaluate", "load", "predict"]
