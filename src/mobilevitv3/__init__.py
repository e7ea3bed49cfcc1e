"""MobileViTv3 (Wadekar & Chaurasia, 2022) and its MobileViTv1/v2 baselines, exact to the official release."""
import os

# Spinning OpenMP workers steal cores from other processes on small machines (measured on 2 busy cores: 2 threads
# trained 4-6x slower than 1; with PASSIVE, 2 threads beat 1). Only a default, set before torch starts OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .checkpoint import CheckpointError
from .models import create_model, get_tag, list_models
from .fuse import fuse

__version__ = "0.1.0"
__all__ = ["CheckpointError", "create_model", "fuse", "get_tag", "list_models"]
