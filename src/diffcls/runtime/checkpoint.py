"""Checkpoint folders: ``config.json`` + ``model.safetensors`` + ``training_state.pt`` + ``metrics.csv``.

* ``model.safetensors`` holds the weights to evaluate (the EMA weights when EMA is on); no pickle is ever loaded.
* ``training_state.pt`` holds tensors and plain containers only (optimiser, scheduler, epoch, RNG states, the raw
  and EMA weights), so it loads with ``torch.load(weights_only=True)``.
* Every write is atomic (:mod:`diffcls.runtime.io`): an interrupted run leaves the old file or the new one.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from diffcls.errors import DiffclsError, first_line
from diffcls.runtime.io import atomic_write

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
STATE_NAME = "training_state.pt"
METRICS_NAME = "metrics.csv"
METRICS_COLUMNS = ["epoch", "train_loss", "lr", "val_top1", "seconds"]


# ------------------------------------------------------------------------------------------------------ weights


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_write(path, lambda f: f.write(save(tensors, metadata=metadata)))


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
    return DiffclsError(f"cannot read weights {path}: {first_line(e)}{hint}")


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
        raise DiffclsError(
            f"cannot load training state {path}: not a tensors-only torch.save file (damaged, "
            f"or holds objects that are never unpickled){'; ' + reason if reason else ''}"
        ) from None
    except Exception as e:  # noqa: BLE001  (torch raises RuntimeError, EOFError, OSError, ... for bad files)
        reason = first_line(e).split(". ")[0].rstrip(".")  # torch appends paragraphs of advice; keep the fact
        raise DiffclsError(
            f"cannot load training state {path} (truncated or damaged?): {type(e).__name__}: {reason}"
        ) from None
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
        raise DiffclsError(f"{path} is not valid JSON: {first_line(e)}") from None
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
        pickles = sorted(
            str(p.relative_to(d))
            for p in [*d.iterdir(), *(d / "unet").glob("*")]
            if p.suffix in (".pt", ".pth", ".bin", ".ckpt", ".tar", ".pkl")
        )
        hint = f" (found {pickles}; pickled weights are never loaded, only {WEIGHTS_NAME})" if pickles else ""
        raise DiffclsError(f"{checkpoint_dir} holds no {WEIGHTS_NAME}{hint}")
    try:
        config = json.loads((d / CONFIG_NAME).read_text())
    except FileNotFoundError:
        raise DiffclsError(f"{checkpoint_dir} holds no {CONFIG_NAME}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DiffclsError(f"{checkpoint_dir}/{CONFIG_NAME} is not valid JSON: {first_line(e)}") from None
    if not isinstance(config, dict) or "method" not in config:
        raise DiffclsError(f"{checkpoint_dir}/{CONFIG_NAME} is not a diffcls checkpoint config (no 'method')")
    if not isinstance(config.get("transform"), dict):
        raise DiffclsError(f"{checkpoint_dir}/{CONFIG_NAME} is not a diffcls checkpoint config (no 'transform')")
    return config
