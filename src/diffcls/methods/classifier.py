"""What the classifier methods share: a network from images to class probabilities, trained on labels,
validated by top-1 on the validation images, exported as ``model.safetensors`` + ``config.json``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn as nn

from diffcls.data import TransformConfig
from diffcls.didicm import SamplerConfig
from diffcls.errors import DiffclsError
from diffcls.inference.metrics import topk_accuracy
from diffcls.inference.predict import Readout, predict_dataset
from diffcls.methods.base import METHODS, Method, get_method
from diffcls.runtime.checkpoint import WEIGHTS_NAME, load_weights, read_checkpoint_config, save_weights
from diffcls.runtime.device import seed_everything
from diffcls.train.config import TrainConfig
from diffcls.train.supervised import SupervisedTrainer

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""``objective(model, images [B, 3, S, S], targets int64[B] or float[B, K]) -> scalar loss``."""


class ClassifierTrainer(SupervisedTrainer):
    """Trains the network of a :class:`ClassifierMethod` with its objective."""

    def _build_model(self) -> None:
        c, k = self.config, self.source.num_classes
        self.method: ClassifierMethod = get_method(c.method)
        seed_everything(c.seed)
        self.model = self.method.create_network(c.model, k).to(self.device)
        self.objective = self.method.objective(c, k)
        self._build_optimisation(self.default_lr())

    def validate(self) -> dict:
        c = self.config
        readout = self.method.readout(self.eval_model, self.method.validation_sampler(c))
        probs, labels = predict_dataset(
            readout,
            self.val_set,
            max(c.batch_size, 256),
            self.device,
            seed=c.seed,
            workers=c.workers,
            desc="validate",
            progress=self.progress,
            dist=self.dist,
        )
        return {"val_top1": topk_accuracy(probs, labels, 1)}

    def save_model(self, model: nn.Module, epoch: int) -> None:
        save_weights(self.out / WEIGHTS_NAME, model.state_dict(), metadata={"epoch": str(epoch)})


class ClassifierMethod(Method):
    """A method whose model maps images to class probabilities (evaluated by ``diffcls eval``'s classifier runner,
    usable by ``diffcls predict`` and as a benchmark contender)."""

    evaluation = "classifier"
    trainer_class = ClassifierTrainer
    uses_sampler: ClassVar[bool] = False  # whether --sampler and its options choose the readout

    def create_network(self, model_name: str, num_classes: int, in_chans: int = 3, **kwargs) -> nn.Module:
        raise NotImplementedError

    def objective(self, config: TrainConfig, num_classes: int) -> Objective:
        raise NotImplementedError

    def readout(self, model: nn.Module, sampler: SamplerConfig | None = None, native_scores: bool = False) -> Readout:
        """``readout(images, generator) -> probs float[B, K]`` of ``model`` (put in eval mode here); with
        ``native_scores``, ``-> (probs, {name: float64[B]})`` for the names of :meth:`native_ood_scores`."""
        raise NotImplementedError

    def native_ood_scores(self, sampler: SamplerConfig | None = None) -> tuple[str, ...]:
        """The uncertainty scores this readout has besides those of its probabilities (``msp``, ``entropy``)."""
        return ()

    def validation_sampler(self, config: TrainConfig) -> SamplerConfig | None:
        """The readout of the per-epoch validation."""
        return None

    def nfe(self, sampler: SamplerConfig | None = None) -> int:
        """Network evaluations per image of :meth:`readout`."""
        return 1

    def readout_fields(self, sampler: SamplerConfig | None = None) -> dict:
        """What a results file records of the readout."""
        return {"sampler": "softmax", "steps": None, "chains": None}

    def load(self, checkpoint_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
        """Rebuild a trained model from its folder (``config.json`` + ``model.safetensors``), in eval mode.

        Returns ``(model, config)``. Missing files, pickles and weights that do not fit the configured
        architecture raise :class:`DiffclsError`.
        """
        config = read_checkpoint_config(checkpoint_dir)
        check_classifier_config(config, checkpoint_dir)
        model = self.create_network(config["model"], int(config["num_classes"]))
        state = load_weights(Path(checkpoint_dir) / WEIGHTS_NAME)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            lines = str(e).splitlines()  # torch's first line names the class; the second says what differs
            first = lines[1].strip() if len(lines) > 1 else str(e)
            raise DiffclsError(f"weights in {checkpoint_dir} do not fit {config['model']} ({first})") from None
        return model.to(device).eval(), config


def check_classifier_config(config: dict, checkpoint_dir: str | Path) -> None:
    """Raise :class:`DiffclsError` unless a classifier's ``config.json`` has what eval and predict read: ``model``,
    ``num_classes``, one name per class in ``class_names`` and a ``transform``."""
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


def load_classifier(checkpoint_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """A trained classifier of any :class:`ClassifierMethod`, by its folder: ``(model in eval mode, config)``.
    Folders of other methods raise :class:`DiffclsError`."""
    config = read_checkpoint_config(checkpoint_dir)
    method = get_method(config["method"])
    if not isinstance(method, ClassifierMethod):
        classifiers = [m.name for m in METHODS.values() if isinstance(m, ClassifierMethod)]
        raise DiffclsError(
            f"{checkpoint_dir} holds a {config['method']!r} model, not a classifier ({', '.join(classifiers)})"
        )
    return method.load(checkpoint_dir, device)
