"""Loading a state dict into a model all-or-nothing: every tensor or none, with one error naming what does not fit."""
from __future__ import annotations

import torch
from torch import nn

from .convert import to_ours
from .io import CheckpointError


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], *, name: str = "model",
                           skip_prefixes: tuple[str, ...] = ()) -> None:
    """Load every tensor or none: missing, unexpected and mis-shaped keys are one error that names them."""
    state = to_ours(state)
    own = model.state_dict()
    if skip_prefixes:
        state = {k: v for k, v in state.items() if not k.startswith(skip_prefixes)}
        own = {k: v for k, v in own.items() if not k.startswith(skip_prefixes)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shaped:
        parts = [f"{len(v)} {what} ({', '.join(v[:3])}{', ...' if len(v) > 3 else ''})"
                 for what, v in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)) if v]
        raise CheckpointError(f"checkpoint does not fit {name}: " + "; ".join(parts))
    model.load_state_dict(state, strict=not skip_prefixes)
