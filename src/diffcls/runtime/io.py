"""Atomic files and append-only logs: the ground floor every layer writes through.

Every write goes to a temporary file in the same folder, is flushed to disk and then renamed over the target, so
an interrupted run leaves either the old file or the new one, never a torn one. ``JsonlLog`` appends one fsynced
line per finished row, so a killed run loses at most the row in flight.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffcls.errors import DiffclsError


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


class MetricsLog:
    """``metrics.csv``: a header, then one row per finished epoch. Rewritten atomically on every append."""

    def __init__(self, path: str | Path, columns: list[str]):
        self.path = Path(path)
        self.columns = list(columns)
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
            atomic_write(
                self.path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in self.rows.values()).encode())
            )

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
