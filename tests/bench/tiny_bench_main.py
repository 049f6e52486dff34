"""``torchrun ... tiny_bench_main.py DATA OUT``: the tiny preset of test_benchmark.py as a torchrun job."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

from test_benchmark import TINY  # noqa: E402

from diffcls.bench import run_benchmark  # noqa: E402
from diffcls.runtime.distributed import init_distributed, shutdown_distributed  # noqa: E402

if __name__ == "__main__":
    dist = init_distributed("cpu")
    run_benchmark(TINY, sys.argv[1], sys.argv[2], device="cpu", workers=0, progress=False, dist=dist)
    shutdown_distributed()
