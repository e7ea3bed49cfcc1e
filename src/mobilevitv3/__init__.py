"""MobileViTv3 (Wadekar & Chaurasia, 2022) and its MobileViTv1/v2 baselines, exact to the official release."""
from .checkpoint import CheckpointError
from .models import create_model, get_tag, list_models
from .fuse import fuse

__version__ = "0.1.0"
__all__ = ["CheckpointError", "create_model", "get_tag", "list_models"]
