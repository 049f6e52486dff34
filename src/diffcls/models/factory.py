"""Build the network for a (method, model name) pair.

* ``standard``: any timm model by name; a DiDiRN name builds its *standard twin* (the same network, every layer
  kept, without the label/noise conditioning), so a twin-vs-DiDiCM comparison isolates the diffusion.
* ``didicm``: a DiDiRN (``didirn_small``, ``didirn18`` … ``didirn152``): image, noisy label and σ in, K log
  concrete scores out.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn as nn

import diffcls.models.didirn  # noqa: F401  (registers the DiDiRN family with timm)
from diffcls.errors import DiffclsError

CLASSIFIER_METHODS = ("standard", "didicm")


def is_didirn(model_name: str) -> bool:
    return model_name.startswith("didirn")


def create_classifier(method: str, model_name: str, num_classes: int, in_chans: int = 3, **kwargs) -> nn.Module:
    """``nn.Module`` for ``method`` in ``CLASSIFIER_METHODS``; unknown names raise :class:`DiffclsError`."""
    if method not in CLASSIFIER_METHODS:
        raise DiffclsError(f"unknown classifier method {method!r}; choose from {', '.join(CLASSIFIER_METHODS)}")
    if not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name[:4]}*")[:6] if model_name else []
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise DiffclsError(f"unknown model {model_name!r}{hint}; see timm.list_models() or the didirn* family")
    if method == "didicm":
        if not is_didirn(model_name):
            raise DiffclsError(f"--method didicm needs a DiDiRN backbone (didirn_small, didirn18..didirn152), "
                               f"got {model_name!r}")
        return timm.create_model(model_name, num_classes=num_classes, in_chans=in_chans, conditional=True, **kwargs)
    if is_didirn(model_name):
        kwargs["conditional"] = False
    return timm.create_model(model_name, num_classes=num_classes, in_chans=in_chans, pretrained=False, **kwargs)


def check_classifier_config(config: dict, checkpoint_dir: str | Path) -> None:
    """Raise :class:`DiffclsError` unless a classifier's ``config.json`` has what eval and predict read: ``model``,
    ``num_classes``, one name per class in ``class_names`` and a ``transform``."""
    from diffcls.data.transforms import TransformConfig

    where = f"{checkpoint_dir}/config.json"
    missing = [k for k in ("model", "num_classes", "class_names", "transform") if k not in config]
    if missing:
        raise DiffclsError(f"{where} lacks {', '.join(missing)}: not a config written by diffcls train")
    k, names = config["num_classes"], config["class_names"]
    if not isinstance(config["model"], str) or not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise DiffclsError(f"{where}: 'model' must be a name and 'num_classes' an integer >= 1")
    if not isinstance(names, list) or len(names) != k:
        raise DiffclsError(f"{where}: 'class_names' must list {k} names")
    try:
        TransformConfig.from_dict(config["transform"])
    except (KeyError, TypeError, ValueError) as e:
        raise DiffclsError(f"{where}: 'transform' is not a transform config ({type(e).__name__}: {e})") from None


def load_classifier(checkpoint_dir: str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a trained classifier from its folder (``config.json`` + ``model.safetensors``), in eval mode.

    Returns ``(model, config)``. Missing files, pickles, configs of other methods and weights that do not fit
    the configured architecture raise :class:`DiffclsError`.
    """
    from diffcls.train.checkpoint import WEIGHTS_NAME, load_weights, read_checkpoint_config

    config = read_checkpoint_config(checkpoint_dir)
    if config["method"] not in CLASSIFIER_METHODS:
        raise DiffclsError(f"{checkpoint_dir} holds a {config['method']!r} model, not a classifier "
                           f"({', '.join(CLASSIFIER_METHODS)})")
    check_classifier_config(config, checkpoint_dir)
    model = create_classifier(config["method"], config["model"], int(config["num_classes"]))
    state = load_weights(Path(checkpoint_dir) / WEIGHTS_NAME)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise DiffclsError(f"weights in {checkpoint_dir} do not fit {config['model']} ({first})") from None
    return model.to(device).eval(), config
