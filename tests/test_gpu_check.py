"""benchmarks/gpu_check.sh fails loudly where there is no CUDA (CI, this machine) instead of skipping."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the check runs for real (10 minutes)")
def test_gpu_check_fails_loudly_without_cuda(tmp_path):
    done = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert done.returncode != 0
    assert "CUDA is not available" in done.stderr and "does not skip" in done.stderr
    assert not (tmp_path / "out" / "twin").exists()  # nothing ran
