"""Small, pure building blocks of the MobileViT families (no registry, no I/O)."""
from .conv import ConvNormAct, make_divisible
from .fuse import fuse
from .mobilevit_block import BlockConfig, MobileViTBlock
from .mv2 import InvertedResidual

__all__ = ["BlockConfig", "ConvNormAct", "InvertedResidual", "MobileViTBlock", "fuse", "make_divisible"]
