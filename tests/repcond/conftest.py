"""One intra-op thread for this folder's tiny models (restored afterwards).

Their ops are too small to gain from a second thread, and on a 2-core machine shared with another job two
OpenMP threads wait on each other at every op: the end-to-end test ran 45x slower (5.8 s vs 0.13 s per epoch).
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
