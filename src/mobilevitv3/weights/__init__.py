"""Weights files: safe reading (`io`), key layouts of the official release and timm -> ours (`convert`),
all-or-nothing loading (`load`) and atomic writing (`write`). Knows nothing of architectures but key names."""
from .io import CheckpointError, Weights, check_file, load_pickle, read_weights
from .load import load_state_dict_strict
from .write import atomic_save, atomic_write, raise_if_no_space, remove_stale_temps, save_safetensors

__all__ = ["CheckpointError", "Weights", "atomic_save", "atomic_write", "check_file", "load_pickle",
           "load_state_dict_strict", "raise_if_no_space", "read_weights", "remove_stale_temps",
           "save_safetensors"]
