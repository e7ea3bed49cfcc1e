"""MobileViTv3 (Wadekar & Chaurasia, 2022) and its MobileViTv1/v2 baselines, exact to the official release.

The package in layers; each imports only from the layers above it in this list (`tests/test_house.py` checks):

    errors    UserError
    layers    pure nn.Modules: conv+norm+act, inverted residual, attention, transformer, patches, the MobileViT
              block, BatchNorm folding
    weights   safe reading, official/timm key layouts -> ours, all-or-nothing loading, atomic writing
    models    architecture configs, backbone, segmentation/detection heads, identity, tags, registry
    hub       save_pretrained / from_pretrained / push_to_hub: a Hugging Face Hub folder with a model card
    timm      opt-in (`import mobilevitv3.timm`): every classifier in timm's registry, with pretrained_cfg
    data      datasets in their published layouts, transforms, samplers
    tasks     what differs between classification, segmentation and detection: loss, metrics, prediction,
              evaluation settings
    export    one module per runtime family (ONNX, torch formats, edge runtimes), quantization, optimize
    train     config, the trainer, loaders, checkpoints, EMA, optimiser and schedule, DDP, run log
    infer     the one loader (a model and its evaluation settings from a checkpoint or an exported file);
              evaluation, prediction, INT8 calibration
    bench     counting (parameters, MACs), timing harness, charts, zoo tables
    commands  one module per subcommand; cli.py is the entry point

Importing the package changes nothing global (no environment variables, torch settings or plotting backends).
"""
from .errors import UserError
from .export.optimize import optimize
from .layers import fuse
from .models import Identity, ModelIdentity, create_model, get_tag, list_models, load_model
from .weights import CheckpointError

__version__ = "0.1.0"
__all__ = ["CheckpointError", "Identity", "ModelIdentity", "UserError", "create_model", "fuse", "get_tag",
           "list_models", "load_model", "optimize"]
