"""The model zoo: small trained checkpoints that ship inside the package, named ``zoo:NAME``.

Each entry is a folder under ``zoo/models/NAME/``: an ordinary checkpoint folder (``config.json`` +
``model.safetensors``, or a ddpm model's diffusers ``DDPMPipeline`` layout) without its training state, plus
``zoo.json``, the entry's record:

* ``recipe``: the ``diffcls train`` arguments that made it (all but ``--output``); ``diffcls zoo reproduce``
  reruns them (CPU training is deterministic, so the weights come back equal on the same machine type);
* ``readout``: the ``diffcls eval`` arguments its metrics were measured with (sampler, schedule, ...);
* ``metrics``: ``val`` (the images the model held out of training), ``test`` (the whole test split) and
  ``test_subset`` (a fixed stratified subset of ``subset_images`` test images, what the fast tests re-measure);
* ``diffcls_version``, ``commit``, ``data``, ``method``, ``model``, ``params``, ``nfe`` and the training time.

The zoo folder is the package's own ``zoo/models`` unless the environment variable ``DIFFCLS_ZOO_DIR`` names
another (a team's shared zoo; the tests' small ones). This module reads the records only (no torch import), so
``diffcls zoo list`` and the resolution of ``zoo:NAME`` arguments are instant. :mod:`diffcls.zoo.match` finds
the entry that a training's options describe (the benchmark's ``--from-zoo``), :mod:`diffcls.zoo.compare`
compares re-measured metrics and retrained weights with a record, and ``benchmarks/build_zoo.py`` builds entries.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from diffcls.errors import DiffclsError, first_line

ZOO_PREFIX = "zoo:"
PACKAGE_ZOO_DIR = Path(__file__).resolve().parent / "models"
ZOO_DIR_VARIABLE = "DIFFCLS_ZOO_DIR"
RECORD_NAME = "zoo.json"


def zoo_dir() -> Path:
    """The zoo folder: ``$DIFFCLS_ZOO_DIR`` when set, else the one shipped in the package."""
    return Path(os.environ[ZOO_DIR_VARIABLE]).resolve() if os.environ.get(ZOO_DIR_VARIABLE) else PACKAGE_ZOO_DIR


@dataclass(frozen=True)
class ZooEntry:
    """One shipped model: its folder and its ``zoo.json`` record."""

    name: str
    folder: Path
    record: dict

    @property
    def recipe(self) -> list[str]:
        """``diffcls train`` arguments, without ``--output``."""
        return list(self.record["recipe"])

    @property
    def readout(self) -> list[str]:
        """``diffcls eval`` arguments of the readout its metrics were measured with."""
        return list(self.record.get("readout", []))

    @property
    def metrics(self) -> dict[str, dict]:
        return self.record["metrics"]

    @property
    def size_bytes(self) -> int:
        """Bytes of every file of the entry's folder (weights, configs, curves and the record)."""
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())

    def eval_command(self, *extra: str) -> list[str]:
        """``diffcls eval`` argv that measures it with its readout, e.g. ``eval_command("--split", "val")``."""
        return ["eval", "--checkpoint", ZOO_PREFIX + self.name, "--data", self.record["data"], *self.readout, *extra]


def _read_entry(folder: Path) -> ZooEntry:
    try:
        record = json.loads((folder / RECORD_NAME).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DiffclsError(f"zoo entry {folder.name}: cannot read {RECORD_NAME}: {first_line(e)}") from None
    missing = [k for k in ("recipe", "data", "method", "model", "metrics") if k not in record]
    if missing:
        raise DiffclsError(f"zoo entry {folder.name}: {RECORD_NAME} lacks {', '.join(missing)}")
    return ZooEntry(folder.name, folder, record)


def zoo_entries(folder: Path | None = None) -> dict[str, ZooEntry]:
    """Every entry of the zoo, by name (sorted)."""
    root = Path(folder) if folder is not None else zoo_dir()
    if not root.is_dir():
        return {}
    folders = sorted(p for p in root.iterdir() if (p / RECORD_NAME).is_file())
    return {p.name: _read_entry(p) for p in folders}


def zoo_entry(name: str, folder: Path | None = None) -> ZooEntry:
    """The entry called ``name`` (with or without the ``zoo:`` prefix); an unknown name lists the known ones."""
    name = name.removeprefix(ZOO_PREFIX)
    entries = zoo_entries(folder)
    if name not in entries:
        known = ", ".join(entries) or "none (the zoo folder is empty)"
        raise DiffclsError(f"unknown zoo model {name!r}; the zoo has {known} (diffcls zoo list)")
    return entries[name]


def resolve_model_path(value: str) -> str:
    """A model folder argument as a path: ``zoo:NAME`` becomes the entry's folder, anything else is returned as
    given (the command's own checks then say what is wrong with it)."""
    if value.startswith(ZOO_PREFIX):
        return str(zoo_entry(value).folder)
    return value


def is_zoo_folder(path: str | Path | None) -> bool:
    """Whether ``path`` lies inside the shipped zoo (which commands only read, never write)."""
    if path is None:
        return False
    resolved = Path(path).resolve()
    return any(resolved == root or root in resolved.parents for root in (zoo_dir(), PACKAGE_ZOO_DIR))
