"""Build a network by name: any timm model, and the DiDiRN family registered with timm.

Which variant a method builds (DiDiCM's conditional DiDiRN, the standard twin) is the method's choice
(:mod:`diffcls.methods`); this module only resolves names, with a one-line error for unknown ones.
"""

from __future__ import annotations

import timm
import torch.nn as nn

import diffcls.models.didirn  # noqa: F401  (registers the DiDiRN family with timm)
from diffcls.errors import DiffclsError


def is_didirn(model_name: str) -> bool:
    return model_name.startswith("didirn")


def create_timm_model(model_name: str, num_classes: int, in_chans: int = 3, **kwargs) -> nn.Module:
    """``timm.create_model(model_name, num_classes=..., in_chans=..., **kwargs)``; an unknown name raises
    :class:`DiffclsError` with similar names."""
    if not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name[:4]}*")[:6] if model_name else []
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise DiffclsError(f"unknown model {model_name!r}{hint}; see timm.list_models() or the didirn* family")
    return timm.create_model(model_name, num_classes=num_classes, in_chans=in_chans, **kwargs)
