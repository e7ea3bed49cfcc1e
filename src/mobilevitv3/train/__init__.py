"""Training: `TrainConfig` (typed, defaults < recipe < flags) and `train(cfg)`, the task-agnostic loop."""
from .config import TrainConfig, resolve
from .job import resolve_job
from .trainer import train

__all__ = ["TrainConfig", "resolve", "resolve_job", "train"]
