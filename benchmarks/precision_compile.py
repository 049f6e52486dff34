"""bf16 autocast and ``torch.compile`` against fp32 eager: time per call and what they do to the outputs.

Cases (``--cases``, all by default):

* ``twin``: the standard twin's forward as ``diffcls eval`` runs it (``get_method("standard").readout(model)``,
  softmax of the logits), ``didirn_small``, batch 256, 3 × 32 × 32;
* ``cp8``: DiDiCM CP-8 (``get_method("didicm").readout(model, SamplerConfig(sampler="cp", steps=8))``) on the
  conditional ``didirn_small``, batch 256;
* ``twin-train`` / ``didicm-train``: one training step of each (the objective's forward, backward and an AdamW
  step, as ``diffcls train`` runs it), batch 128.

Variants of every case: fp32 eager (the reference, 1.0×), bf16 autocast eager
(``torch.autocast(device_type, dtype=torch.bfloat16)``), fp32 ``torch.compile`` (default mode) and bf16
autocast + compile. Compilation is lazy, so each variant's first call is timed on its own: "one-off compile" is
that first call minus the steady-state median. Compiles go into a fresh, empty inductor cache (removed at the
end), so they are cold ones (``--keep-compile-cache`` uses the usual, possibly warm, cache), and a one-op
function is compiled first so that inductor's start-up is reported apart, not charged to the first row. The
variants of one case then run interleaved repeat by repeat (after one untimed round), so the speed-ups compare
like with like. For DiDiCM the compiled variants compile what the readout calls (the model and, for a
DiDiRN, its ``forward_prefix`` and ``forward_conditioned``); the sampler's own arithmetic stays eager, and so
does the optimiser step in training. A variant whose compile (or bf16 run) raises is reported as
"failed: <reason>" and the others go on.

For the inference cases the table also gives the effect on the outputs, on the same inputs and sampler seed:
the largest absolute difference of a class probability to fp32 eager's, and the fraction of images whose
argmax agrees with fp32 eager's. By default the networks are untrained (fixed seeds) and the inputs random.
``--checkpoint DIR [DIR ...]`` puts trained classifiers (``diffcls.methods.load_classifier``; a
``standard`` one replaces the twin, a ``didicm`` one CP-8's network) in their inference case; that case then
runs on the test split of ``--data`` (bundled mnist5k by default, through the checkpoint's eval transform), in
batches of exactly ``--batch`` images (the last one padded by repeating images, so a compiled network sees one
shape), and also reports each variant's top-1 accuracy. Training steps always use untrained networks and random
images and labels (time does not depend on the weights).

    .venv/bin/python benchmarks/precision_compile.py --repeats 5 --write-docs
    .venv/bin/python benchmarks/precision_compile.py --device cuda --repeats 20
    .venv/bin/python benchmarks/precision_compile.py --cases twin cp8 --checkpoint runs/twin runs/didicm
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/precision_compile.py --quick   # smoke test: batch 8, 1 repeat

The quick run still compiles every compiled variant (about 6 minutes on one core, nearly all of it compiling).

Prints a markdown table with its command, machine and date; ``--write-docs`` also puts it into
docs/performance.md (section ``precision-compile``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn

from _harness import interleaved_medians, markdown_table, random_images, report, seconds  # benchmarks/_harness.py
from diffcls.data import ImageDataset, ImageTransform, TransformConfig, load_source
from diffcls.didicm import SamplerConfig
from diffcls.eval.evaluate import select_split
from diffcls.inference.predict import batch_seed
from diffcls.methods import get_method, load_classifier
from diffcls.train.config import TrainConfig

REFERENCE = "fp32 eager"
VARIANTS = {
    REFERENCE: (False, False),
    "bf16 autocast": (True, False),
    "fp32 compile": (False, True),
    "bf16 autocast + compile": (True, True),
}  # name -> (bf16, compiled)
CASES = ("twin", "cp8", "twin-train", "didicm-train")
CP8 = SamplerConfig(sampler="cp", steps=8)


class Compiled:
    """What the readouts and the objectives use of a classifier, compiled: calling it, and (for a DiDiRN)
    ``forward_prefix`` and ``forward_conditioned``, which ``bind_image`` calls instead of the whole network.

    ``torch.compile(model)`` alone would not do: its module hands those two methods on uncompiled, and setting
    them on it would set them on the shared eager model. Mode and weights stay the model's own.
    """

    def __init__(self, model: nn.Module):
        self.model, self.num_classes = model, model.num_classes
        self.call = torch.compile(model)
        if hasattr(model, "forward_prefix"):
            self.forward_prefix = torch.compile(model.forward_prefix)
            self.forward_conditioned = torch.compile(model.forward_conditioned)

    @property
    def training(self) -> bool:
        return self.model.training

    def eval(self) -> Compiled:
        """Eval mode of the model (a method's ``readout`` sets it on what it reads out)."""
        self.model.eval()
        return self

    @property
    def prefix_stages(self) -> int:
        """The model's unconditioned stages: ``bind_image`` shares the prefix only when there are some."""
        return getattr(self.model, "prefix_stages", 0)

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        return self.call(*args)


@dataclass
class Result:
    """One variant of one case: first call (compile included), steady-state median, first output, or failure."""

    first: float = 0.0
    median: float = 0.0
    output: torch.Tensor | None = None
    failed: str = ""


@dataclass
class Case:
    """One case: its label, images per call, a timed call per variant, and for inference the variants'
    predictors ``(images, seed) -> probs`` with optional labelled data for the agreement and accuracy."""

    label: str
    images: int
    runs: dict[str, Callable[[], object]]
    predictors: dict[str, Callable[..., torch.Tensor]] = field(default_factory=dict)
    data: tuple[torch.Tensor, torch.Tensor] | None = None  # (images, labels) of a checkpoint's test split


def precision(device: torch.device, bf16: bool):
    """bf16 autocast on ``device``, or nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def synced(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``fn`` followed by a CUDA synchronisation on a GPU, so that wall-clock time covers the work."""
    if device.type != "cuda":
        return fn

    def run() -> object:
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return run


def one_line(e: BaseException) -> str:
    """An exception as one short table-safe line (compile errors put the cause on their second line)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines and lines[0].endswith(":") else (lines[0] if lines else "")
    return f"{type(e).__name__}: {text}".replace("|", "/")[:200]


def seeded_classifier(method: str, model_name: str, classes: int, device: torch.device) -> nn.Module:
    """An untrained classifier with fixed seed 0 on ``device``."""
    torch.manual_seed(0)
    return get_method(method).create_network(model_name, classes).to(device)


def predictor(
    model: nn.Module, method: str, sampler: SamplerConfig | None, bf16: bool, device: torch.device
) -> Callable[..., torch.Tensor]:
    """``predict(images, seed=0) -> probs``: the method's readout under the variant's precision (and
    ``torch.inference_mode``), seeded sampler."""
    readout = get_method(method).readout(model, sampler)

    def predict(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
        with precision(device, bf16), torch.inference_mode():
            return readout(images, torch.Generator(device).manual_seed(seed))

    return predict


def inference_case(
    label: str,
    model: nn.Module,
    method: str,
    sampler: SamplerConfig | None,
    images: torch.Tensor,
    device: torch.device,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Case:
    """All variants of the method's readout on one eval-mode model (the compiled ones share its weights)."""
    model.eval()
    compiled = Compiled(model)
    predictors = {
        name: predictor(compiled if comp else model, method, sampler, bf16, device)
        for name, (bf16, comp) in VARIANTS.items()
    }
    runs = {name: synced(partial(p, images), device) for name, p in predictors.items()}
    return Case(label, len(images), runs, predictors, data)


def train_step(
    method: str,
    model_name: str,
    classes: int,
    images: torch.Tensor,
    labels: torch.Tensor,
    bf16: bool,
    compiled: bool,
    device: torch.device,
) -> Callable[[], None]:
    """One optimisation step on a fixed batch, with its own seeded network and AdamW: the objective's forward
    under the variant's precision, backward and optimiser step outside it."""
    model = seeded_classifier(method, model_name, classes, device).train()
    net = Compiled(model) if compiled else model
    objective = get_method(method).objective(
        TrainConfig(data="", method=method, model=model_name, output=""), classes
    )  # diffcls train's defaults
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def run() -> None:
        with precision(device, bf16):
            loss = objective(net, images, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return synced(run, device)


def training_case(label: str, method: str, args, device: torch.device) -> Case:
    """All variants of one training step, on the same random batch of images and labels."""
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(args.train_batch, 3, 32, 32, generator=g) * 2 - 1).to(device)
    labels = torch.randint(0, args.classes, (args.train_batch,), generator=g).to(device)
    runs = {
        name: train_step(method, args.model, args.classes, images, labels, bf16, comp, device)
        for name, (bf16, comp) in VARIANTS.items()
    }
    return Case(label, args.train_batch, runs)


def checkpoint_test_set(config: dict, spec: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A checkpoint's test images through its eval transform, ``float32[N, 3, S, S]``, and labels ``int64[N]``."""
    source = load_source(spec)
    if source.num_classes > config["num_classes"]:
        raise SystemExit(f"data {spec} has {source.num_classes} classes, the checkpoint {config['num_classes']}")
    dataset = ImageDataset(
        select_split(source, "test", limit), ImageTransform(TransformConfig.from_dict(config["transform"]))
    )
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(images), torch.tensor(labels)


def load_checkpoints(dirs: list[str], device: torch.device) -> dict[str, tuple[nn.Module, dict]]:
    """method -> (model, config) for each ``--checkpoint`` folder; one per method."""
    loaded: dict[str, tuple[nn.Module, dict]] = {}
    for folder in dirs:
        model, config = load_classifier(folder, device)
        if config["method"] in loaded:
            raise SystemExit(f"two --checkpoint folders hold a {config['method']!r} classifier")
        loaded[config["method"]] = (model, {**config, "folder": folder})
    return loaded


def build_cases(args, device: torch.device) -> list[Case]:
    """The chosen cases, in CASES order; inference cases on a checkpoint's network and test images if given."""
    checkpoints = load_checkpoints(args.checkpoint, device)
    cases = []
    for key, method, sampler, what in (
        ("twin", "standard", None, "standard twin forward"),
        ("cp8", "didicm", CP8, "DiDiCM CP-8 (predict_proba)"),
    ):
        if key not in args.cases:
            continue
        if method in checkpoints:
            model, config = checkpoints[method]
            data = checkpoint_test_set(config, args.data, args.limit)
            timing = padded(data[0], args.batch)[: args.batch].to(device)
            label = f"{what}, {config['model']} from {config['folder']}, {args.data} test"
            cases.append(inference_case(label, model, method, sampler, timing, device, data))
        else:
            model = seeded_classifier(method, args.model, args.classes, device)
            cases.append(
                inference_case(
                    f"{what}, {args.model}", model, method, sampler, random_images(args.batch).to(device), device
                )
            )
    for key, method, what in (
        ("twin-train", "standard", "standard twin training step"),
        ("didicm-train", "didicm", "DiDiCM training step"),
    ):
        if key in args.cases:
            cases.append(training_case(f"{what}, {args.model}", method, args, device))
    return cases


def padded(images: torch.Tensor, batch: int) -> torch.Tensor:
    """``images`` repeated cyclically up to a multiple of ``batch`` (at least one batch)."""
    total = max(batch, -(-len(images) // batch) * batch)
    return images[torch.arange(total) % len(images)]


def predict_all(
    predict: Callable[..., torch.Tensor], images: torch.Tensor, batch: int, device: torch.device
) -> torch.Tensor:
    """Probabilities of all ``images`` in batches of exactly ``batch`` (seeded per batch as ``diffcls eval``)."""
    full = padded(images, batch)
    parts = [
        predict(full[i : i + batch].to(device), batch_seed(0, j)).cpu()
        for j, i in enumerate(range(0, len(full), batch))
    ]
    return torch.cat(parts)[: len(images)]


def first_calls(runs: dict[str, Callable[[], object]]) -> dict[str, Result]:
    """Each variant's first call in turn (compiling the compiled ones): seconds and output. A variant other than
    the reference that raises is marked failed."""
    results = {}
    for name, run in runs.items():
        box: list = []
        try:
            results[name] = Result(first=seconds(lambda box=box, run=run: box.append(run())), output=box[0])
        except Exception as e:  # no compiler, unsupported op, out of memory: report it and go on
            if name == REFERENCE:
                raise
            results[name] = Result(failed=one_line(e))
    return results


def measure(case: Case, repeats: int) -> dict[str, Result]:
    """First calls, then the variants that worked interleaved (one untimed round first)."""
    results = first_calls(case.runs)
    alive = {name: run for name, run in case.runs.items() if not results[name].failed}
    for name, median in interleaved_medians(alive, repeats, warmup=1).items():
        results[name].median = median
    return results


def output_effect(case: Case, results: dict[str, Result], batch: int, device: torch.device) -> dict[str, list[str]]:
    """variant -> [max abs prob difference to fp32 eager, argmax agreement, top-1] ("—" where not measured)."""
    if not case.predictors:
        return {name: ["—", "—", "—"] for name in results}
    if case.data is None:
        probs = {name: r.output.float().cpu() for name, r in results.items() if not r.failed}
        labels = None
    else:
        images, labels = case.data
        probs = {
            name: predict_all(case.predictors[name], images, batch, device)
            for name, r in results.items()
            if not r.failed
        }
    ref = probs[REFERENCE]
    effect = {name: ["—", "—", "—"] for name in results}
    for name, p in probs.items():
        top1 = "—" if labels is None else f"{(p.argmax(1) == labels).float().mean():.4f}"
        effect[name] = [f"{(p - ref).abs().max():.1e}", f"{(p.argmax(1) == ref.argmax(1)).float().mean():.4f}", top1]
    return effect


def table_rows(case: Case, results: dict[str, Result], effect: dict[str, list[str]]) -> list[list[str]]:
    """One row per variant: compile, seconds, images/s, speed-up, then the output effect."""
    ref = results[REFERENCE].median
    rows = []
    for name, r in results.items():
        if r.failed:
            rows.append([case.label, name, f"failed: {r.failed}", "—", "—", "—", "—", "—", "—"])
            continue
        compile_s = f"{max(r.first - r.median, 0.0):.1f}" if VARIANTS[name][1] else "—"
        rows.append(
            [
                case.label,
                name,
                compile_s,
                f"{r.median:.4f}",
                f"{case.images / r.median:,.0f}",
                f"{ref / r.median:.2f}×",
                *effect[name],
            ]
        )
    return rows


def inductor_start_up() -> str:
    """Compile and run a one-op function first, so that inductor's start-up (imports, compiler checks, headers)
    is not charged to the first compiled row; returns its seconds, or why it failed."""
    x = torch.ones(4)
    try:
        return f"{seconds(lambda: torch.compile(lambda t: t.relu() + 1)(x)):.1f} s"
    except Exception as e:  # reported; the compiled rows will fail with their own reason
        return f"failed: {one_line(e)}"


@contextlib.contextmanager
def compile_cache(keep: bool):
    """Unless ``keep``: point inductor (and Triton) at a fresh, empty cache folder for the run, removed afterwards,
    so that "one-off compile" is a cold compile and not a read of an earlier run's cached kernels."""
    if keep:
        yield "the user's inductor cache (possibly warm)"
        return
    with tempfile.TemporaryDirectory(prefix="precision_compile.") as folder:
        os.environ["TORCHINDUCTOR_CACHE_DIR"], os.environ["TRITON_CACHE_DIR"] = folder, os.path.join(folder, "triton")
        yield "a fresh, empty inductor cache (cold compiles)"


def device_note(device: torch.device) -> str:
    """What ran the table: the GPU (and its TF32 setting) or the CPU."""
    if device.type == "cuda":
        conv = getattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision", None)
        conv = conv or ("tf32" if torch.backends.cudnn.allow_tf32 else "ieee")
        return f"Device: {torch.cuda.get_device_name(device)}; fp32 convolutions at cuDNN precision {conv!r}."
    return f"Device: CPU ({cpu_name()}), {torch.get_num_threads()} threads."


def cpu_name() -> str:
    """The CPU's model name and whether it has native bf16 arithmetic (from /proc/cpuinfo where there is one)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "model unknown"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    native = sorted(flags & {"avx512_bf16", "amx_bf16"})
    return f"{name}, native bf16: {', '.join(native) if native else 'none (no avx512_bf16 or amx_bf16)'}"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=None, help="images per inference call (default 256)")
    ap.add_argument("--train-batch", type=int, default=None, help="images per training step (default 128)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--model", default="didirn_small")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument(
        "--checkpoint",
        nargs="+",
        default=[],
        metavar="DIR",
        help="trained classifiers (diffcls train folders) for the inference cases",
    )
    ap.add_argument("--data", default="mnist5k", help="data spec whose test split a --checkpoint runs on")
    ap.add_argument("--limit", type=int, default=None, help="use only this many test images (stratified)")
    ap.add_argument(
        "--keep-compile-cache",
        action="store_true",
        help="use the usual inductor cache instead of a fresh one (compile times may then be warm)",
    )
    ap.add_argument("--quick", action="store_true", help="smoke test: batch 8, 1 repeat")
    ap.add_argument("--write-docs", action="store_true", help="write the table into docs/performance.md")
    args = ap.parse_args()
    args.batch = args.batch or (8 if args.quick else 256)
    args.train_batch = args.train_batch or (8 if args.quick else 128)
    args.repeats = 1 if args.quick else args.repeats
    return args


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    rows = []
    with compile_cache(args.keep_compile_cache) as cache:
        start_up = inductor_start_up()
        for case in build_cases(args, device):
            results = measure(case, args.repeats)
            rows += table_rows(case, results, output_effect(case, results, args.batch, device))
    columns = [
        "case",
        "variant",
        "one-off compile (s)",
        "seconds per call",
        "images/s",
        "speed-up vs fp32 eager",
        "max abs Δ probability vs fp32 eager",
        "argmax agreement with fp32 eager",
        "top-1",
    ]
    notes = [
        device_note(device),
        (
            f"Inference batch {args.batch}, training batch {args.train_batch}, K = {args.classes}; speed-up: fp32 "
            "eager's median ÷ the variant's, within one case. One-off compile: the variant's first call minus its "
            f"median, compiling into {cache}, after inductor's start-up (a one-op function compiled first: "
            f"{start_up}). Compiled: torch.compile default mode on the network (for DiDiCM also its "
            "forward_prefix and forward_conditioned); the CP sampler and the AdamW step stay eager. Training uses "
            "untrained networks with fixed seeds on random images and labels; bf16 autocast covers its forward and "
            "loss."
        ),
        (
            "Output effect: on the same inputs and sampler seed as fp32 eager. Untrained networks on random "
            "inputs give near-uniform probabilities, where argmax agreement is a strict test (near ties flip); "
            "rows from a checkpoint run on its test images and give top-1."
        ),
    ]
    report(
        "precision-compile",
        "bf16 autocast and torch.compile",
        args.repeats,
        markdown_table(columns, rows),
        notes,
        args.write_docs,
    )


if __name__ == "__main__":
    main()
