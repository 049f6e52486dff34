"""Checkpoint folders: ``config.json`` + ``model.safetensors`` + ``training_state.pt`` + ``metrics.csv``.

* ``model.safetensors`` holds the weights to evaluate (the EMA weights when EMA is on); no pickle is ever loaded.
* ``training_state.pt`` holds tensors and plain containers only (optimiser, scheduler, epoch, RNG states, the raw
  and EMA weights), so it loads with ``torch.load(weights_only=True)``.
* Every write goes to a temporary file in the same folder, is flushed to disk and then renamed over the target,
  so an interrupted run leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from diffcls.errors import DiffclsError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
STATE_NAME = "training_state.pt"
METRICS_NAME = "metrics.csv"
METRICS_COLUMNS = ["epoch", "train_loss", "lr", "val_top1", "seconds"]


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write ``path`` through ``write(file)`` into a temp file, fsync it, then rename it into place."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise DiffclsError(f"cannot write to folder {path.parent}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise DiffclsError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def prepare_output_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) and check it is writable; a clear error otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DiffclsError(f"cannot create output folder {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise DiffclsError(f"output folder {path} is not writable")
    return path


# ------------------------------------------------------------------------------------------------------ weights


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_write(path, lambda f: f.write(save(tensors, metadata=metadata)))


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0].strip() if lines else type(e).__name__


def _weights_error(path: str | Path, e: BaseException) -> DiffclsError:
    """The error for a weights file that safetensors refused, with a hint when it is a pickle or cut short."""
    hint = ""
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
    except OSError:
        magic = b""
    if magic in (b"PK", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):  # torch.save zip, pickle 2..5
        hint = " (it is a pickle or torch.save file, not safetensors; pickled weights are never loaded)"
    elif "incomplete metadata" in str(e) or "invalid header length" in str(e):
        hint = " (truncated?)"
    return DiffclsError(f"cannot read weights {path}: {_first_line(e)}{hint}")


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise _weights_error(path, e) from None


def check_weights_file(path: str | Path) -> None:
    """Raise :class:`DiffclsError` unless ``path`` is a complete safetensors file (reads its header only)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError, ValueError) as e:
        raise _weights_error(path, e) from None


def save_training_state(path: str | Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


STATE_KEYS = ("epoch", "model", "optimizer", "scheduler")


def load_training_state(path: str | Path) -> dict:
    """The training state saved by :func:`save_training_state`, loaded with ``weights_only=True`` (tensors and
    plain containers; never arbitrary objects). A damaged, truncated or foreign file raises :class:`DiffclsError`."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's first line advises weights_only=False; never do that. Its reason is on a later line.
        after = str(e).partition("WeightsUnpickler error:")[2]
        reason = next((ln.strip() for ln in after.splitlines() if ln.strip()), "")
        raise DiffclsError(f"cannot load training state {path}: not a tensors-only torch.save file (damaged, "
                           f"or holds objects that are never unpickled){'; ' + reason if reason else ''}") from None
    except Exception as e:  # noqa: BLE001  (torch raises RuntimeError, EOFError, OSError, ... for bad files)
        reason = _first_line(e).split(". ")[0].rstrip(".")  # torch appends paragraphs of advice; keep the fact
        raise DiffclsError(f"cannot load training state {path} (truncated or damaged?): {type(e).__name__}: "
                           f"{reason}") from None
    missing = [k for k in STATE_KEYS if k not in state] if isinstance(state, dict) else list(STATE_KEYS)
    if missing:
        raise DiffclsError(f"{path} is not a diffcls training state (lacks {', '.join(missing)})")
    return state


def read_saved_train_config(checkpoint_dir: str | Path) -> dict:
    """The ``"train"`` options in a checkpoint folder's ``config.json`` ({} when there is no config.json yet),
    for ``--resume`` to compare with the new options. A damaged config.json raises :class:`DiffclsError`."""
    path = Path(checkpoint_dir) / CONFIG_NAME
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise DiffclsError(f"{path} is not valid JSON: {_first_line(e)}") from None
    train = config.get("train", {}) if isinstance(config, dict) else None
    if not isinstance(train, dict):
        raise DiffclsError(f"{path} is not a diffcls checkpoint config")
    return train


# ----------------------------------------------------------------------------------------------------- folders


def read_checkpoint_config(checkpoint_dir: str | Path) -> dict:
    """The ``config.json`` of a checkpoint folder, after checking that the folder holds safetensors weights."""
    d = Path(checkpoint_dir)
    if not d.is_dir():
        raise DiffclsError(f"checkpoint folder not found: {checkpoint_dir}")
    # A ddpm checkpoint keeps its weights in the diffusers layout (unet/), as a DDPMPipeline folder.
    if not (d / WEIGHTS_NAME).is_file() and not (d / "unet" / "diffusion_pytorch_model.safetensors").is_file():
        pickles = sorted(str(p.relative_to(d)) for p in [*d.iterdir(), *(d / "unet").glob("*")]
                         if p.suffix in (".pt", ".pth", ".bin", ".ckpt", ".tar", ".pkl"))
        hint = f" (found {pickles}; pickled weights are never loaded, only {WEIGHTS_NAME})" if pickles else ""
        raise DiffclsError(f"{checkpoint_dir} holds no {WEIGHTS_NAME}{hint}")
    try:
        config = json.loads((d / CONFIG_NAME).read_text())
    except FileNotFoundError:
        raise DiffclsError(f"{checkpoint_dir} holds no {CONFIG_NAME}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DiffclsError(f"{checkpoint_dir}/{CONFIG_NAME} is not valid JSON: {_first_line(e)}") from None
    if not isinstance(config, dict) or "method" not in config:
        raise DiffclsError(f"{checkpoint_dir}/{CONFIG_NAME} is not a diffcls checkpoint config (no 'method')")
    if not isinstance(config.get("transform"), dict):
        raise DiffclsError(f"{checkpoint_dir}/{CONFIG_NAME} is not a diffcls checkpoint config (no 'transform')")
    return config


class MetricsLog:
    """``metrics.csv``: a header, then one row per finished epoch. Rewritten atomically on every append."""

    def __init__(self, path: str | Path, columns: list[str] | None = None):
        self.path = Path(path)
        self.columns = list(columns or METRICS_COLUMNS)
        self.rows: list[dict] = []

    def load(self, up_to_epoch: int) -> None:
        """Keep the rows of epochs ``< up_to_epoch`` from an earlier run (rows past a resume point are dropped)."""
        if self.path.is_file():
            with open(self.path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < up_to_epoch]

    def append(self, row: dict) -> None:
        self.rows.append({k: row.get(k, "") for k in self.columns})  # a column a phase lacks stays empty
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, out.getvalue())


class JsonlLog:
    """Append-only JSONL of finished rows, keyed by ``row["key"]``, fsynced per row, so a killed run loses at most
    the row in flight. A line cut short by a kill is ignored (and dropped from the file) on restart."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: dict[str, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.rows[row["key"]] = row
            # Rewrite without the torn line so appends start on a fresh line.
            atomic_write(self.path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in self.rows.values()).encode()))

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def append(self, row: dict) -> None:
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise DiffclsError(f"cannot append to {self.path}: {e.strerror or e}") from None
        self.rows[row["key"]] = row
