"""Training: `TrainConfig` (typed, defaults < recipe < flags) and `train(cfg)`, the task-agnostic loop."""
from .config import TrainConfig, resolve
from .trainer import train

__all__ = ["TrainConfig", "resolve", "train"]
