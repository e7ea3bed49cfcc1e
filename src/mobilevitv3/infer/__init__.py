"""Inference from files: a model from a checkpoint (ours, official, timm) or an exported file, its metrics on a
data set (`evaluate`) and its predictions on images (`predict`)."""
from .run import evaluate, load_model, predict

__all__ = ["evaluate", "load_model", "predict"]
