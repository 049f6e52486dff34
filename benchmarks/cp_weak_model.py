"""CP updates on a weak DiDiCM at few steps: where the library's ``euler-lower`` and the reference ``euler`` part.

Trains the 6-epoch ``didirn_small_late1`` DiDiCM of tests/train/test_loop.py on digits (16 px, seed 0, about a
minute on 2 cores), then reads its validation split out with CP at 2, 4 and 8 steps for each update and prints
top-1, NLL, ECE and the exact-tie rate (docs/protocols.md quotes the table).

    .venv/bin/python benchmarks/cp_weak_model.py [--output /tmp/cp-weak]
"""

from __future__ import annotations

import argparse
import datetime

from _harness import command_line, markdown_table  # benchmarks/_harness.py
from diffcls.data import load_source, validation_split
from diffcls.data.transforms import TransformConfig
from diffcls.didicm import SamplerConfig
from diffcls.eval.evaluate import evaluate_model
from diffcls.methods import get_method, load_classifier, trainer
from diffcls.train.config import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", default="/tmp/cp-weak", help="where the weak model is trained")
    args = ap.parse_args()
    config = TrainConfig(
        data="digits",
        method="didicm",
        model="didirn_small_late1",
        output=args.output,
        epochs=6,
        batch_size=64,
        img_size=16,
        lr=4e-3,
        val_sampler="cp",
        val_steps=8,
    )
    trainer(config, progress=False).fit()
    model, mconfig = load_classifier(args.output, "cpu")
    _, val = validation_split(load_source("digits").train, config.val_split)
    transform = TransformConfig.from_dict(mconfig["transform"])
    body = []
    for steps in (2, 4, 8):
        for update in ("euler", "euler-lower", "analytic"):
            sampler = SamplerConfig("cp", steps=steps, cp_update=update)
            m, _ = evaluate_model(get_method("didicm"), model, val, transform, sampler)
            body.append([str(steps), update, *(f"{m[k]:.3f}" for k in ("top1", "nll", "ece", "tie_rate"))])
    print(f"`{command_line()}`, {datetime.date.today()}; {len(val)} validation images\n")
    print(markdown_table(["steps", "update", "top-1", "NLL", "ECE", "exact ties"], body))


if __name__ == "__main__":
    main()
