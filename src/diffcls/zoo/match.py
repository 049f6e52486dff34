"""Which zoo entry a training would reproduce: the benchmark starts a model from the entry trained with exactly its
options (``diffcls bench --from-zoo``) instead of training it again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from diffcls.methods import get_method
from diffcls.runtime.checkpoint import CONFIG_NAME, STATE_NAME
from diffcls.runtime.io import atomic_write_text
from diffcls.runtime.lock import FOLDER_LOCK_NAME
from diffcls.train.config import COMMON_OPTIONS
from diffcls.zoo import RECORD_NAME, ZooEntry, zoo_entries

# Training options that say where and how a run executed, not what it learned (--val-every changes no weight).
NOT_RECIPE_OPTIONS = frozenset({"output", "device", "workers", "val_every"})


def recipe_options(method: str) -> frozenset[str]:
    """The ``config.json["train"]`` options that decide what a training of ``method`` learns: the ones the method
    reads (others keep their defaults and are ignored) less :data:`NOT_RECIPE_OPTIONS`."""
    return (COMMON_OPTIONS | get_method(method).options) - NOT_RECIPE_OPTIONS


def same_training(a: dict, b: dict) -> bool:
    """Whether two checkpoints' ``config.json["train"]`` options describe the same training (an option that one
    side lacks counts as differing)."""
    if a.get("method") != b.get("method") or "method" not in a:
        return False
    return all(k in a and k in b and a[k] == b[k] for k in recipe_options(a["method"]))


def entry_trained_like(train: dict, folder: Path | None = None) -> ZooEntry | None:
    """The zoo entry trained with exactly these ``config.json["train"]`` options, if there is one."""
    for entry in zoo_entries(folder).values():
        try:
            config = json.loads((entry.folder / CONFIG_NAME).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if same_training(config.get("train", {}), train):
            return entry
    return None


NOT_INSTALLED = (RECORD_NAME, STATE_NAME, FOLDER_LOCK_NAME)  # the record, optimiser state and a lock


def install_entry(entry: ZooEntry, folder: str | Path, *, output: str) -> None:
    """Copy an entry's checkpoint into ``folder`` (a writable model folder of one's own), its ``config.json``
    naming ``output`` as the training's output and the entry it came from (``"zoo_entry"``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for path in entry.folder.iterdir():
        if path.name in NOT_INSTALLED or path.name == CONFIG_NAME:
            continue
        if path.is_dir():
            shutil.copytree(path, folder / path.name, dirs_exist_ok=True)
        else:
            shutil.copy2(path, folder / path.name)
    config = json.loads((entry.folder / CONFIG_NAME).read_text())
    config["zoo_entry"] = entry.name
    config.get("train", {})["output"] = output
    # config.json last: a folder is complete for the benchmark once it holds its config and its curve
    atomic_write_text(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
