from .config import ABLATION, CONFIGS, ModelConfig, Stage
from .registry import create_model, get_tag, list_models

__all__ = ["ABLATION", "CONFIGS", "ModelConfig", "Stage", "create_model", "get_tag", "list_models"]
