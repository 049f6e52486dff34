"""L1 error of DiDiCM-CP driven by the *exact* score of a known p₀, against the number of steps.

No network: the score function returns log q_σ(j)/q_σ(c) from the closed-form marginal of p₀, so the only error
is the sampler's own. Euler (the paper's step) is first order; the analytic step is exact.

    .venv/bin/python benchmarks/cp_exact_score.py
"""

from __future__ import annotations

import torch

from diffcls.didicm import UniformProcess, cp_sample

P0 = torch.tensor([[0.5, 0.3, 0.1, 0.07, 0.03]], dtype=torch.float64)


def exact_score_fn(c_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """log p_σ(j) − log p_σ(c_t) for the marginal of P0 (B×K)."""
    p_sigma = UniformProcess(P0.shape[1]).marginal(P0.expand(len(c_t), -1), sigma)
    return p_sigma.log() - p_sigma.log().gather(1, c_t[:, None])


def main() -> None:
    steps = [1, 2, 4, 8, 32, 64, 512, 4096]
    print("| steps | " + " | ".join(map(str, steps)) + " |")
    print("|---" * (len(steps) + 1) + "|")
    for update in ("euler", "analytic"):
        errors = [(cp_sample(exact_score_fn, 1, 5, s, update=update).double() - P0).abs().sum().item() for s in steps]
        print(f"| {update} | " + " | ".join(f"{e:.2g}" for e in errors) + " |")


if __name__ == "__main__":
    main()
