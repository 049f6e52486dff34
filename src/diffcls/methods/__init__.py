"""Methods: one module per way of training and reading out a model, each registered under its ``--method`` name.

* ``standard`` (:mod:`.standard`): a cross-entropy classifier; a DiDiRN name builds the standard twin;
* ``didicm`` (:mod:`.didicm`): discrete label diffusion on a DiDiRN, read out by the DiDiCM samplers;
* ``ddpm`` (:mod:`.ddpm`): a class-conditional noise predictor, scored by the Diffusion Classifier;
* ``repcond-pretrain``, ``uncond-pretrain``, ``repcond-tune`` (:mod:`.repcond`): the rep-conditioned DiT's
  phases, scored by Diffusion Classifier Zero.

Importing the package imports every module in it, so a new method is one new module (see CONTRIBUTING.md).
"""

from __future__ import annotations

import importlib
import pkgutil

from diffcls.methods.base import EVALUATIONS, METHODS, Method, get_method, method_of, register
from diffcls.methods.classifier import ClassifierMethod, load_classifier
from diffcls.train.loop import Trainer

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def trainer(config, progress: bool | None = None, dist=None, source=None) -> Trainer:
    """The trainer of ``config``'s method (any method's config), built: data, model, optimiser, output folder."""
    return get_method(config.method).trainer(config, progress=progress, dist=dist, source=source)


def train(config, resume: bool = False, progress: bool | None = None, dist=None, source=None) -> dict:
    """Train ``config`` (any method's config) with its method; returns the last metrics row."""
    return get_method(config.method).train(config, resume=resume, progress=progress, dist=dist, source=source)


__all__ = [
    "METHODS",
    "EVALUATIONS",
    "Method",
    "ClassifierMethod",
    "get_method",
    "method_of",
    "register",
    "load_classifier",
    "trainer",
    "train",
]
