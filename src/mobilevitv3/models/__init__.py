from .config import ABLATION, CONFIGS, ModelConfig, Stage
from .identity import Identity, ModelIdentity, Preprocess
from .registry import create_model, identity_record, list_models, load_model, model_from_identity
from .tags import Tag, get_tag, split_arch

__all__ = ["ABLATION", "CONFIGS", "Identity", "ModelConfig", "ModelIdentity", "Preprocess", "Stage", "Tag",
           "create_model", "get_tag", "identity_record", "list_models", "load_model", "model_from_identity",
           "split_arch"]
