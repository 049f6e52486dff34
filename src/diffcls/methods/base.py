"""What a method is, and the registry that names them.

A :class:`Method` owns everything that differs between ways of training and reading out a model: its config
class and the ``diffcls train`` options it reads, its trainer (network, objective, validation during training,
checkpoint export), how its checkpoint folder loads, and which evaluation runner scores it. The training loop,
the evaluators, the CLI and the benchmark ask :func:`get_method` instead of comparing method names.

A new method is one module in :mod:`diffcls.methods` that defines a subclass and decorates it with
:func:`register` (the package imports its modules, so the CLI lists the new ``--method`` at once).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from diffcls.data import DataSource
from diffcls.errors import DiffclsError
from diffcls.runtime import distributed
from diffcls.runtime.checkpoint import read_checkpoint_config
from diffcls.runtime.distributed import Dist
from diffcls.runtime.lock import exclusive
from diffcls.train.config import COMMON_OPTIONS, TrainConfig, config_from_options
from diffcls.train.loop import Trainer

EVALUATIONS = ("classifier", "diffusion-classifier", "dc-zero")  # the evaluation runners (see diffcls.eval)


class Method:
    """One training method. Subclasses set the class attributes and the trainer."""

    name: ClassVar[str]
    summary: ClassVar[str]  # what it trains, for --help
    config_class: ClassVar[type] = TrainConfig
    options: ClassVar[frozenset[str]] = frozenset()  # the config fields it reads besides COMMON_OPTIONS
    trainer_class: ClassVar[type[Trainer]]
    evaluation: ClassVar[str]  # which runner of EVALUATIONS scores its checkpoints
    default_model: ClassVar[str | None] = None  # None: --model is required
    models_help: ClassVar[str] = ""  # which --model names it takes, for --help

    def make_config(self, options: dict):
        """The config of ``diffcls train`` from the options given on the command line (flag names with ``_``).
        An option this method does not read is an error naming the flag; ``model`` falls back to
        :attr:`default_model`."""
        options = {k: v for k, v in options.items() if v is not None}
        options["method"] = self.name
        if "model" not in options:
            if self.default_model is None:
                raise DiffclsError(f"--method {self.name} needs --model")
            options["model"] = self.default_model
        return config_from_options(self.config_class, options, COMMON_OPTIONS | self.options, self.name)

    def trainer(
        self, config, progress: bool | None = None, dist: Dist | None = None, source: DataSource | None = None
    ) -> Trainer:
        return self.trainer_class(config, progress=progress, dist=dist, source=source)

    def train(
        self,
        config,
        resume: bool = False,
        progress: bool | None = None,
        dist: Dist | None = None,
        source: DataSource | None = None,
    ) -> dict:
        """Train as configured (resuming from ``config.output`` when asked); returns the last metrics row.
        The output folder is locked for the whole run (:mod:`diffcls.runtime.lock`): a second run on it stops
        with :class:`~diffcls.runtime.lock.OutputBusy` before it reads or writes anything."""
        with exclusive(folders=[config.output], dist=dist or distributed.current()):
            return self.trainer(config, progress, dist, source).fit(resume=resume)


METHODS: dict[str, Method] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add an instance of ``cls`` to :data:`METHODS` under ``cls.name``."""
    if cls.evaluation not in EVALUATIONS:
        raise ValueError(f"{cls.__name__}.evaluation must be one of {EVALUATIONS}, got {cls.evaluation!r}")
    METHODS[cls.name] = cls()
    return cls


def get_method(name: str) -> Method:
    """The registered method called ``name``; an unknown name lists the known ones."""
    if name not in METHODS:
        raise DiffclsError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def method_of(checkpoint_dir: str | Path) -> tuple[Method, dict]:
    """The method that wrote a checkpoint folder, and the folder's ``config.json``."""
    config = read_checkpoint_config(checkpoint_dir)
    return get_method(config["method"]), config
