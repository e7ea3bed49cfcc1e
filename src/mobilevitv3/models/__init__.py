from .config import ABLATION, CONFIGS, ModelConfig, Stage
from .identity import Identity, Preprocess
from .registry import create_model, identity_record, list_models, load_model
from .tags import Tag, get_tag, split_arch

__all__ = ["ABLATION", "CONFIGS", "Identity", "ModelConfig", "Preprocess", "Stage", "Tag", "create_model",
           "get_tag", "identity_record", "list_models", "load_model", "split_arch"]
