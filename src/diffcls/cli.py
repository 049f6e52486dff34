"""The ``diffcls`` command: ``train``, ``eval``, ``predict``, ``bench`` and ``zoo`` subcommands.

Each subcommand is a short function that turns parsed flags into a config and calls the library. Errors caused
by the user's input (:class:`DiffclsError`) are printed on one line with exit status 2, never as a traceback.

What the registries know (methods, samplers, data-spec kinds, corruptions) is read from them, never listed here.
They live with torch-importing code, so this module imports the library inside the command functions, and the
help texts that list registry entries are filled in only when help is printed (:class:`RegistryHelp`): ``diffcls
--help`` and a mistyped flag answer in a tenth of a second instead of the ~10 s that importing torch takes here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from diffcls.errors import DiffclsError


def model_folder(value: str) -> str:
    """argparse type of model-folder flags: ``zoo:NAME`` names a shipped model (:mod:`diffcls.zoo`), anything else
    is a path, checked by the command that reads it."""
    from diffcls.zoo import resolve_model_path

    try:
        return resolve_model_path(value)
    except DiffclsError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


MODEL_FOLDER_HELP = "; or zoo:NAME, a model shipped with diffcls (diffcls zoo list)"


class RegistryHelp:
    """A help text computed from a registry when help is printed (see the module docstring)."""

    def __init__(self, make: Callable[[], str], suffix: str = ""):
        self.make = make
        self.suffix = suffix

    def text(self) -> str:
        return self.make() + self.suffix


def _recipes_help() -> str:
    from diffcls.train.recipes import recipes_help

    return recipes_help()


def _methods_help() -> str:
    from diffcls.methods import METHODS

    return "; ".join(f"{m.name}: {m.summary}" for m in METHODS.values())


def _models_help() -> str:
    from diffcls.methods import METHODS

    return (
        "model name, per method: "
        + "; ".join(f"{m.name}: {m.models_help}" for m in METHODS.values() if m.models_help)
        + " (default: the method's, where it has one)"
    )


def _data_help() -> str:
    from diffcls.data import data_spec_help

    return data_spec_help()


def _sampler_help() -> str:
    from diffcls.didicm import SAMPLERS

    return "; ".join(f"{spec.name}: {spec.summary}" for spec in SAMPLERS.values()) + " (default: cp)"


def _cp_update_help() -> str:
    from diffcls.didicm import CP_UPDATES, SamplerConfig

    updates = "; ".join(f"{name}: {text}" for name, text in CP_UPDATES.items())
    return f"the cp step, {updates} (default: {SamplerConfig().cp_update})"


def _corruption_help() -> str:
    from diffcls.data.corruptions import CORRUPTION_NAMES

    return f"one of the {len(CORRUPTION_NAMES)} corruptions of imagecorruptions: {', '.join(CORRUPTION_NAMES)}"


DATA_HELP = RegistryHelp(_data_help)

EPILOG_TRAIN = """examples:
  diffcls train --data mnist5k --method standard --model didirn_small --output runs/std --epochs 8
  diffcls train --data mnist5k --method didicm --model didirn_small --output runs/didicm --epochs 15
  diffcls train --data cifar10:/data/cifar-10-batches-py --method standard --model resnet18 --output runs/r18
  diffcls train --data mnist5k --method ddpm --model unet_small --img-size 16 --epochs 40 -b 32 --lr 1e-3 \
                --ema-decay 0.995 --output runs/ddpm
  diffcls train ... --resume        (continue an interrupted run in the same --output folder)
"""

EPILOG_EVAL = """examples:
  diffcls eval --checkpoint runs/std --data mnist5k --results-file runs/std/eval.json
  diffcls eval --checkpoint runs/didicm --data mnist5k --sampler cp --steps 8 --results-file cp8.json
  diffcls eval --checkpoint runs/didicm --data mnist5k --sampler cl --steps 8 --chains 10 --results-file cl.json
  diffcls eval --checkpoint runs/std --data mnist5k --corruption fog --severity 3 --results-file fog3.json

Diffusion Classifier (a model trained with --method ddpm, or a diffusers folder):
  diffcls eval --checkpoint runs/ddpm --data mnist5k --split train --limit 200 --fit-temperature --results-file t.json
  diffcls eval --checkpoint runs/ddpm --data mnist5k --schedule cifar10 --results-file dc.json
  diffcls eval --pretrained models/ddpm-pipeline --method diffusion-classifier --data mnist5k \
               --n-samples 20,100 --to-keep 3,1 --loss l1 --results-file dc.json
"""


def _add_sampler_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("DiDiCM sampling (ignored by standard classifiers)")
    g.add_argument("--sampler", default="cp", metavar="NAME", help=RegistryHelp(_sampler_help))
    g.add_argument("--steps", type=int, default=8, help="diffusion steps for cp and cl (default: 8)")
    g.add_argument("--chains", type=int, default=10, help="label chains per image for cl (default: 10)")
    g.add_argument("--cp-update", default=None, metavar="NAME", help=RegistryHelp(_cp_update_help))
    g.add_argument(
        "--cp-reference",
        choices=["min", "max", "random"],
        default="min",
        help="label fed to the network at each cp step: argmin p, argmax p or sampled (default: min)",
    )


def _sampler_config(args: argparse.Namespace):
    from diffcls.didicm import CP_UPDATES, SAMPLERS, SamplerConfig

    if args.sampler not in SAMPLERS:
        raise DiffclsError(f"unknown --sampler {args.sampler!r}; choose from {', '.join(SAMPLERS)}")
    if args.steps < 1 or args.chains < 1:
        raise DiffclsError("--steps and --chains must be >= 1")
    if args.cp_update is not None and args.cp_update not in CP_UPDATES:
        raise DiffclsError(f"unknown --cp-update {args.cp_update!r}; choose from {', '.join(CP_UPDATES)}")
    return SamplerConfig(
        sampler=args.sampler,
        steps=args.steps,
        chains=args.chains,
        cp_update=args.cp_update or SamplerConfig().cp_update,
        cp_reference=args.cp_reference,
    )


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error format of the rest of diffcls (no usage block); subparsers inherit it."""

    def error(self, message: str):
        self.exit(2, f"diffcls: error: {message} (see {self.prog} --help)\n")

    def format_help(self) -> str:
        for action in self._actions:
            if isinstance(action.help, RegistryHelp):
                action.help = action.help.text().replace("%", "%%")
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="diffcls",
        description="Diffusion-based image classification: train, "
        "evaluate and compare DiDiCM, diffusion classifiers and standard classifiers.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_parser(sub)
    _add_eval_parser(sub)
    _add_predict_parser(sub)
    _add_bench_parser(sub)
    _add_zoo_parser(sub)
    return parser


def _version() -> str:
    import diffcls

    return f"diffcls {diffcls.__version__}"


def _add_train_parser(sub) -> None:
    # Only the flags given reach the method (argument_default=SUPPRESS), which fills in its own defaults and
    # refuses a flag it would ignore. The defaults quoted in the help are the methods'.
    p = sub.add_parser(
        "train",
        help="train a classifier on a data spec",
        epilog=EPILOG_TRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
        description="Train a model and write OUTPUT/config.json, its weights, metrics.csv and a "
        "resumable training_state.pt. A flag that the chosen --method does not read is "
        "an error.",
    )
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--method", required=True, metavar="NAME", help=RegistryHelp(_methods_help))
    p.add_argument("--model", help=RegistryHelp(_models_help))
    p.add_argument("--output", required=True, help="checkpoint folder to write")
    p.add_argument("--recipe", metavar="NAME", help=RegistryHelp(_recipes_help))
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, help="(default: 10)")
    g.add_argument("-b", "--batch-size", type=int, help="per process (default: 128; repcond 64)")
    g.add_argument("--lr", type=float, help="learning rate (default: per optimiser, × batch/256; repcond 3e-4)")
    g.add_argument("--opt", help="timm optimiser: sgd, adamw or lamb (default: adamw)")
    g.add_argument("--weight-decay", type=float, help="(default: 0.05; repcond 0)")
    g.add_argument("--sched", choices=["cosine", "step", "const"], help="(default: cosine)")
    g.add_argument("--warmup-epochs", type=int, help="(default: 1; repcond 0)")
    g.add_argument("--clip-grad", type=float, help="clip the gradient norm to this value (default: none; repcond 1)")
    g.add_argument("--ema-decay", type=float, help="keep an EMA of the weights (e.g. 0.999)")
    g.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only; ignored on the CPU)")
    g = p.add_argument_group("targets and augmentation (standard, didicm)")
    g.add_argument("--smoothing", type=float, help="label smoothing (default: 0)")
    g.add_argument("--mixup", type=float, help="mixup alpha (timm Mixup; soft targets)")
    g.add_argument("--cutmix", type=float, help="cutmix alpha (timm Mixup; soft targets)")
    g.add_argument(
        "--augment",
        choices=["none", "crop", "crop-flip", "rrc-flip"],
        help="default: the data kind's (crop for digits, crop-flip for cifar10, rrc-flip for folders); "
        "none for repcond",
    )
    g.add_argument(
        "--rand-augment",
        metavar="CONFIG",
        help="timm's RandAugment after the crop, e.g. rand-m7-mstd0.5-inc1 (default: none)",
    )
    g.add_argument(
        "--aug-repeats",
        type=int,
        help="repeated augmentation (timm's RepeatAugSampler): each image N times per batch (default: 1)",
    )
    g.add_argument("--color-jitter", type=float, help="brightness/contrast/saturation jitter (default: 0)")
    g = p.add_argument_group("data")
    g.add_argument(
        "--data-ratio",
        type=float,
        help="keep floor(n_c·R) training images per class (at least one), fixed seed (default: 1)",
    )
    g.add_argument(
        "--equal-steps",
        action="store_true",
        help="with --data-ratio < 1, repeat the kept images so an epoch has as many steps as on the "
        "full data (the same optimisation budget for every fraction)",
    )
    g.add_argument(
        "--ratio-lr",
        action="store_true",
        help="with --data-ratio R < 1, scale the learning rate by √(1/R) (the DiDiCM reference's rule)",
    )
    g.add_argument(
        "--val-split",
        type=float,
        help="fraction of the training images held out (stratified, fixed seed) for the per-epoch validation in "
        "metrics.csv; 0 validates on the test split (default: 0.1)",
    )
    g.add_argument(
        "--train-limit",
        type=int,
        metavar="N",
        help="use a fixed stratified subset of N training images (before --val-split; default: all)",
    )
    g.add_argument("--img-size", type=int, help="model input size (default: 32; 224 for folders)")
    g.add_argument("--fit", choices=["auto", "resize", "pad"], help="how images reach --img-size (default: auto)")
    g.add_argument(
        "--low-res", type=int, help="train on a low-resolution view: downsample to S×S, then back to --img-size"
    )
    g.add_argument("-j", "--workers", type=int, help="data-loading worker processes (default: 0)")
    g = p.add_argument_group("DiDiCM")
    g.add_argument("--noise", choices=["loglinear", "geometric"], help="noise schedule (default: loglinear)")
    g.add_argument("--sampling-eps", type=float, help="t ~ U(eps, 1) during training (default: 1e-5)")
    g.add_argument("--val-sampler", metavar="NAME", help="sampler for the per-epoch validation accuracy (default: cp)")
    g.add_argument(
        "--val-steps",
        type=int,
        help="steps of the validation sampler; for ddpm, timesteps of the validation classifier (default: 8)",
    )
    g = p.add_argument_group("ddpm (Diffusion Classifier models)")
    g.add_argument(
        "--label-dropout",
        type=float,
        help="train with the label replaced by a null class with this probability (default: 0)",
    )
    g.add_argument("--val-images", type=int, help="validate on N of the validation images (default: 200)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, help="(default: 0)")
    g.add_argument("--device", help="auto, cpu or cuda[:N] (default: auto)")
    g.add_argument("--resume", action="store_true", help="continue the run saved in --output")
    g.add_argument(
        "--val-every",
        type=int,
        metavar="N",
        help="validate and write the checkpoint every N epochs and after the last (default: 1); the epochs between "
        "log their training loss only, and the weights are the same as with 1 (each epoch seeds its own randomness)",
    )
    g = p.add_argument_group("repcond (representation-conditioned DiT; see docs/results.md)")
    g.add_argument(
        "--pretrained", metavar="DIR", type=model_folder, help="repcond-tune: the *-pretrain folder" + MODEL_FOLDER_HELP
    )
    g.add_argument("--encoder", help="ViT preset over the clean latent (default: paired with --model)")
    g.add_argument(
        "--vae",
        metavar="DIR",
        help="a diffusers AutoencoderKL folder on local disk: train in its latent space (default: pixels)",
    )
    g.add_argument("--d-r", type=int, help="width of a global representation r (default: 64)")
    g.add_argument(
        "--r-tokens",
        type=int,
        metavar="C",
        help="repcond-pretrain: a spatial r, C values per DiT token (the paper's decode layer 'Norm, Linear, "
        "UnPatchify' read as a latent-shaped map; C below the patch's p*p*channels values so r cannot copy the "
        "latent); default: one global vector of --d-r values",
    )
    g.add_argument(
        "--decode-injection",
        choices=["input", "output"],
        help="where r's decoded latent-shaped map joins the DiT: input (added to z_t before the denoiser, the "
        "paper's reading) or output (added to the DiT's final layer; default); r is also added at every block",
    )
    g.add_argument(
        "--cond-dropout", type=float, help="probability of replacing r (or the label) by its null vector (default: 0.1)"
    )
    g.add_argument(
        "--val-holdout",
        type=int,
        help="training images held out of every phase for validation and the t-sweep (default: 0)",
    )
    g.add_argument("--val-t", type=int, help="repcond-tune: DC Zero validation timestep (default: 500)")
    g.add_argument(
        "--label-init",
        choices=["class-mean", "class-mean-rescaled", "random"],
        help="repcond-tune from a rep-cond folder: start each label code at its class's mean r (default), at "
        "those means spread as far apart as N(0, 1) codes, or at N(0, 1) codes (as from an unconditional DiT; "
        "drawn from --seed alone, so every arm of one seed starts from the same codes)",
    )
    g.add_argument(
        "--reset-injection",
        action="store_const",
        const=True,
        help="repcond-tune: zero the pretrained injection projections and tune the DiT trunk alone, as an "
        "unconditional DiT is tuned",
    )
    p.set_defaults(func=cmd_train)


def _add_eval_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on a data spec",
        epilog=EPILOG_EVAL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate a trained classifier: top-1, top-5, NLL, ECE (15 bins), per-class "
        "accuracy, NFE per image and seconds, written to --results-file as JSON.",
    )
    p.add_argument(
        "--checkpoint", default=None, type=model_folder, help="folder written by diffcls train" + MODEL_FOLDER_HELP
    )
    p.add_argument(
        "--pretrained",
        default=None,
        metavar="DIR",
        type=model_folder,
        help="a diffusers pipeline folder, read locally: DDPMPipeline (class-conditional UNet), "
        "DiTPipeline, or StableDiffusionPipeline (zero-shot, with prompts)" + MODEL_FOLDER_HELP,
    )
    p.add_argument(
        "--method",
        choices=["auto", "diffusion-classifier"],
        default="auto",
        help="auto: the checkpoint's own method (a ddpm checkpoint or --pretrained folder is scored by "
        "the Diffusion Classifier)",
    )
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument(
        "--split",
        choices=["train", "val", "test"],
        default="test",
        help="val: the images the checkpoint held out of training (its --val-split); train: the ones it trained "
        "on (default: test)",
    )
    p.add_argument("--results-file", required=True, help="JSON file to write")
    p.add_argument("--save-probs", default=None, help="write predicted probabilities, float32 N×K .npy")
    p.add_argument("-b", "--batch-size", type=int, default=256)
    p.add_argument("--low-res", type=int, default=None, help="evaluate on a low-resolution view (S×S and back)")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="evaluate only N images: a fixed stratified subset (the first N of a class-interleaved order)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the samplers' randomness")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="classifiers (standard, DiDiCM): fit a temperature T (p ∝ p^(1/T)) by NLL on the validation images "
        "the checkpoint held out, with the same readout, and add temperature and post_nll, post_brier, post_ece, "
        "post_ece_adaptive, post_aurc, post_augrc (the Diffusion Classifier's λ: --fit-temperature)",
    )
    g = p.add_argument_group("out-of-distribution detection (classifiers and the Diffusion Classifier)")
    g.add_argument(
        "--ood-data",
        default=None,
        metavar="SPEC",
        help="also classify the test split of this data spec (or 'noise': uniform noise shaped like the test "
        "images) and write ood_auroc, ood_aupr, ood_fpr95 (OOD is the positive class); --save-probs FILE saves "
        "its probabilities in FILE with .ood.npy; the Diffusion Classifier logs its OOD images per image in the "
        "per-image file with .ood.jsonl (resumable too)",
    )
    g.add_argument(
        "--ood-score",
        default="msp",
        metavar="NAME",
        help="uncertainty score of the ood_* metrics (ood_by_score has them all): msp (1 - max probability; "
        "default), entropy (predictive entropy), or the method's own: energy (standard: -logsumexp of the "
        "logits), wander (DiDiCM CP and CL: how far the sampler's class distribution moves beyond the distance it "
        "covers), lowest_error (Diffusion Classifier: the best class's mean noise-prediction error)",
    )
    g.add_argument("--ood-limit", type=int, default=None, help="OOD images (default: as many as test images)")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "-j",
        "--workers",
        type=int,
        default=0,
        help="data-loading worker processes (corruptions use at least one process)",
    )
    _add_corruption_flags(p)
    _add_sampler_flags(p)
    _add_diffusion_classifier_flags(p)
    g = p.add_argument_group("Diffusion Classifier Zero (repcond-tune checkpoints)")
    g.add_argument(
        "--timesteps",
        default=None,
        metavar="T1,T2,..",
        help="score at these timesteps (one t: argmin of the error; several: combined by --aggregate; default: 500)",
    )
    g.add_argument(
        "--t-sweep",
        action="store_true",
        help="first measure top-1 at t = 50, 100, .., 950 on the held-out training images "
        "(--val-holdout at training), then evaluate at the best t; writes RESULTS.tsweep.png",
    )
    g.add_argument(
        "--aggregate",
        choices=["relative", "mean", "vote"],
        default="relative",
        help="how several timesteps combine (default: relative: each t's errors over their class mean)",
    )
    g.add_argument(
        "--noise-draws",
        type=int,
        default=1,
        metavar="D",
        help="average each class's error at a t over D shared noises (default 1, the paper's single draw; "
        "NFE = classes x timesteps x D)",
    )
    p.set_defaults(func=cmd_eval)


def _add_schedule_flags(g) -> None:
    """The Diffusion Classifier's timestep schedule (eval and predict); read back by :func:`_schedule`."""
    g.add_argument(
        "--schedule",
        default=None,
        metavar="NAME",
        help="the paper's elimination schedules: cifar10 (default), stl10, pets, food101, aircraft, "
        "flowers102, imagenet, objectnet; or flat-N (every class on N timesteps)",
    )
    g.add_argument(
        "--n-samples",
        default=None,
        metavar="N1,N2,..",
        help="timesteps scored per surviving class after each stage, e.g. 50,500",
    )
    g.add_argument("--to-keep", default=None, metavar="K1,K2,..", help="classes kept after each stage, e.g. 5,1")


def _schedule(args: argparse.Namespace):
    from diffcls.generative import parse_schedule

    if args.schedule and args.n_samples:
        raise DiffclsError("give either --schedule or --n-samples/--to-keep, not both")
    return parse_schedule(args.n_samples, args.to_keep, preset=None if args.n_samples else args.schedule or "cifar10")


def _add_diffusion_classifier_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Diffusion Classifier (ddpm checkpoints, --pretrained folders)")
    g.add_argument(
        "--proposer",
        default=None,
        metavar="DIR",
        type=model_folder,
        help="the hybrid readout: a classifier folder (standard twin, DiDiCM with --sampler) proposes its top "
        "--proposer-top-k classes per image and the Diffusion Classifier scores only those (NFE = the schedule's "
        "for K = top-k, plus the proposer's); the proposer keeps the probability of the classes it left out"
        + MODEL_FOLDER_HELP,
    )
    g.add_argument("--proposer-top-k", type=int, default=3, metavar="K", help="classes proposed per image (default 3)")
    g.add_argument(
        "--early-stop",
        type=float,
        default=None,
        metavar="ALPHA",
        help="per-image early stopping on a flat schedule (--schedule flat-M: at most M timesteps): classes race "
        "in looks of --early-stop-chunk timesteps and leave once a paired t-test on log errors says they lose; "
        "ALPHA bounds the chance of dropping the best class (Bonferroni over classes and looks); results give the "
        "mean NFE per image; with --proposer only its top-k classes race",
    )
    g.add_argument("--early-stop-chunk", type=int, default=5, metavar="N", help="timesteps per look (default 5)")
    g.add_argument(
        "--fit-timestep-weights",
        default=None,
        metavar="FILE",
        help="on a flat schedule: fit per-timestep weights of the mean error (and lambda) by NLL on the evaluated "
        "images (use held-out ones: --split val) and write them to FILE (JSON)",
    )
    g.add_argument(
        "--timestep-weights",
        default=None,
        metavar="FILE",
        help="rank classes by the weighted mean error over t with weights (and lambda) from FILE "
        "(--fit-timestep-weights; the same flat-M schedule)",
    )
    _add_schedule_flags(g)
    g.add_argument("--loss", choices=["l2", "l1", "huber"], default="l2", help="per-pixel error (default: l2)")
    g.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="lambda of softmax(-lambda * error) (default: the model's calibration.json, else 1)",
    )
    g.add_argument(
        "--fit-temperature",
        action="store_true",
        help="fit lambda by NLL on the evaluated images and store it in the model folder; use "
        "held-out images (e.g. --split test --limit 200, then evaluate with --start 200)",
    )
    g.add_argument(
        "--prompt-template",
        default="a photo of a {}.",
        help="text-conditional models: one prompt per class name (default: 'a photo of a {}.')",
    )
    g.add_argument(
        "--prompts",
        default=None,
        metavar="CSV",
        help="text-conditional models: prompts from a CSV with columns prompt,classname,classidx "
        "(several prompts per class allowed; a class's probability sums over its prompts)",
    )
    g.add_argument(
        "--start",
        type=int,
        default=0,
        help="skip the first I images of the fixed stratified order that --limit takes from (default: 0)",
    )
    g.add_argument(
        "--per-image",
        default=None,
        metavar="FILE",
        help="JSONL of per-image outcomes, appended as images finish; a rerun resumes from it "
        "(default: the results file with .images.jsonl)",
    )


def _add_corruption_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("corruptions (ImageNet-C / CIFAR-10-C)")
    g.add_argument("--corruption", default=None, metavar="NAME", help=RegistryHelp(_corruption_help))
    g.add_argument("--severity", type=int, default=None, help="corruption severity, 1..5")
    g.add_argument(
        "--corruption-set",
        choices=["imagenet", "cifar"],
        default=None,
        help="parameter set: ImageNet-C's (for 224 px) or CIFAR-10-C's (milder, for 32 px); "
        "default: cifar for images of at most 64 px, imagenet otherwise",
    )
    g.add_argument(
        "--corruption-cache",
        default=None,
        metavar="DIR",
        help="cache of corrupted test sets (default: $DIFFCLS_CACHE/corruptions or ~/.cache/diffcls/corruptions)",
    )


def _add_predict_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files with a checkpoint",
        description="Print the top-k classes of each image with their probabilities: with a classifier folder "
        "(standard, DiDiCM: its --sampler) or a class-conditional DDPM folder (the Diffusion Classifier: its "
        "--schedule, the same shared noise as diffcls eval for the same --seed).",
    )
    p.add_argument(
        "--checkpoint", required=True, type=model_folder, help="folder written by diffcls train" + MODEL_FOLDER_HELP
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (png, jpg, ...)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    _add_sampler_flags(p)
    g = p.add_argument_group(
        "Diffusion Classifier (ddpm checkpoints): the class that survives elimination is the prediction, "
        "probabilities softmax(-lambda * error) with the folder's calibration.json"
    )
    _add_schedule_flags(g)
    p.set_defaults(func=cmd_predict)


EPILOG_BENCH = """presets:
  quick   what `make demo` runs, ~14 min on 2 CPU cores: the standard twin (8 epochs) and DiDiCM (20 epochs),
          each at its validation plateau on mnist5k; seed 0; four corruptions at severities 3/5 and an 8-px view
          (test only); NFE sweep on clean images; 400 test images
  full    the papers' protocols beside today's variants: twin, plain ResNet (15 epochs) and DiDiCM (40); seeds 0-2
          at full data and at 5% (same epochs, and equal steps); trained and tested at 16/12/8 px, and a 12-px
          test-only view; all 19 corruptions at severities 1/3/5; NFE sweep with seed 0 on clean images and on
          gaussian_noise/5; 500 test images
          (54 trainings; hours on 2 CPU cores)

To resume a killed run, repeat its command: finished rows and trained checkpoints are kept.
Outputs in --output: results.csv, results.json, report.md, plots/*.png, models/, rows.jsonl.
"""


def _add_bench_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="compare DiDiCM with its standard twin under corruption, scarce data and low resolution",
        epilog=EPILOG_BENCH,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the standard twin, a plain ResNet and DiDiCM with one recipe and seed, "
        "evaluate them on a grid of conditions, and write tables, a report and plots.",
    )
    p.add_argument("--preset", choices=["quick", "full"], default="quick", help="what to run (default: quick)")
    p.add_argument("--data", default="mnist5k", help=RegistryHelp(_data_help, " (default: mnist5k)"))
    p.add_argument("--output", required=True, help="benchmark folder (created; reused to resume)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("-j", "--workers", type=int, default=2, help="processes that build corrupted test sets")
    p.add_argument(
        "--with",
        dest="extra_contenders",
        action="append",
        default=[],
        metavar="NAME",
        help="add an optional contender (repeatable; it may join a finished benchmark): late1 = DiDiCM on "
        "didirn_small_late1, the cheap DiDiCM whose last stage alone is conditioned",
    )
    p.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="KEY=EPOCHS",
        help="a contender's budget in epochs instead of the preset's (repeatable; keys: standard, plain, didicm, "
        "didicm-late1, dc), e.g. --budget didicm=80 where its validation curve is still climbing",
    )
    p.add_argument(
        "--train-limit",
        type=int,
        default=None,
        metavar="N",
        help="train on a fixed stratified subset of N training images (large data sets on a CPU)",
    )
    p.add_argument(
        "--eval-limit",
        type=int,
        default=None,
        metavar="N",
        help="evaluate on a fixed stratified subset of N test images (default: the preset's, 500)",
    )
    p.add_argument(
        "--from-zoo",
        action="store_true",
        help="start every model that a zoo entry was trained like (same options, data, seed and budget) from that "
        "entry instead of training it: the full preset's seed-0 full-data twin, plain ResNet, DiDiCM and late-1 on "
        "mnist5k (diffcls zoo list)",
    )
    dc = p.add_argument_group("Diffusion Classifier (a fourth contender; may join a finished benchmark)")
    dc.add_argument(
        "--diffusion-classifier",
        action="store_true",
        help="also train a class-conditional UNet (DDPM) at every data fraction (first seed) and "
        "classify a fixed test subset under every condition by its noise-prediction errors",
    )
    dc.add_argument("--dc-model", default="unet_small", help="noise predictor: unet_tiny, unet_small, unet_base")
    dc.add_argument("--dc-epochs", type=int, default=None, help="its training budget (default: the preset's)")
    dc.add_argument(
        "--dc-images",
        type=int,
        default=50,
        help="test images it classifies per condition (a fixed stratified subset; default 50)",
    )
    dc.add_argument("--dc-n-samples", default="4,16", help="timesteps per elimination stage (default 4,16)")
    dc.add_argument("--dc-to-keep", default="2,1", help="classes kept after each stage (default 2,1)")
    p.set_defaults(func=cmd_bench)


EPILOG_ZOO = """examples:
  diffcls zoo list
  diffcls predict --checkpoint zoo:mnist5k-didicm examples/digits/*.png
  diffcls eval --checkpoint zoo:mnist5k-ddpm --data mnist5k --limit 200 --results-file dc.json
  diffcls zoo verify mnist5k-didicm             # re-measure its recorded metrics on the test subset
  diffcls zoo reproduce mnist5k-standard --output runs/std   # retrain it from its recipe, compare the weights

The zoo folder is the package's zoo/models unless DIFFCLS_ZOO_DIR names another.
"""


def _add_zoo_parser(sub) -> None:
    p = sub.add_parser(
        "zoo",
        help="list, verify and retrain the trained models shipped with diffcls (zoo:NAME)",
        epilog=EPILOG_ZOO,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Small trained models ship inside the package: pass zoo:NAME wherever a command takes a "
        "model folder (eval, predict --checkpoint; eval --pretrained). Each records the training command that "
        "made it, the diffcls version and commit, its data split and its validation and test metrics.",
    )
    zsub = p.add_subparsers(dest="zoo_command", required=True, metavar="ZOO_COMMAND")
    q = zsub.add_parser("list", help="the entries with data, method, parameters, NFE, metrics and size")
    q.add_argument("--json", action="store_true", help="print the records as JSON")
    q.add_argument("--paths", action="store_true", help="print each entry's folder instead of the table")
    q.set_defaults(func=cmd_zoo_list)
    q = zsub.add_parser(
        "reproduce",
        help="rerun an entry's training recipe, then compare the new weights with the shipped ones",
        description="Runs `diffcls train` with the entry's recorded arguments and --output DIR, then prints how "
        "many weight tensors came back bit-for-bit equal and the largest difference.",
    )
    q.add_argument("name", metavar="NAME", help="zoo entry (with or without zoo:)")
    q.add_argument("--output", required=True, help="checkpoint folder to write")
    q.add_argument("--resume", action="store_true", help="continue an interrupted reproduction in --output")
    q.set_defaults(func=cmd_zoo_reproduce)
    q = zsub.add_parser(
        "verify",
        help="re-measure an entry's recorded metrics with its readout and say whether they agree",
        description="Evaluates the entry as its record says (same readout, same images) and compares top-1 "
        "(within one image), NLL, Brier and ECE (within 0.005) with the record. Exit status 1 if any differs.",
    )
    q.add_argument("name", metavar="NAME", help="zoo entry (with or without zoo:)")
    q.add_argument(
        "--full",
        action="store_true",
        help="the validation split and the whole test split (default: the recorded stratified test subset, "
        "seconds to a few minutes)",
    )
    q.add_argument("--output", default=None, help="folder for the results files (default: a temporary one)")
    q.set_defaults(func=cmd_zoo_verify)


# ------------------------------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    from diffcls.methods import get_method
    from diffcls.runtime.distributed import init_distributed
    from diffcls.train.recipes import apply_recipe

    options = {k: v for k, v in vars(args).items() if k not in ("func", "command", "resume")}
    recipe = options.pop("recipe", None)
    method = get_method(options.pop("method"))
    if recipe is not None and "recipe" not in method.options:
        raise DiffclsError(f"--recipe does not apply to --method {method.name} (the recipes train classifiers)")
    options = apply_recipe(recipe, options)
    config = method.make_config(options)
    dist = init_distributed(config.device)
    row = method.train(config, resume=getattr(args, "resume", False), dist=dist)
    if row and dist.is_main:
        print(json.dumps(row))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from diffcls.eval.diffusion_classifier import ood_log_path
    from diffcls.eval.evaluate import check_output_paths, ood_probs_path
    from diffcls.runtime.device import resolve_device
    from diffcls.runtime.distributed import init_distributed, rank_device
    from diffcls.runtime.lock import exclusive

    check_output_paths(args.results_file, args.save_probs, args.per_image)
    dist = init_distributed(args.device)
    device = str(resolve_device(rank_device(args.device, dist)))
    runners = {
        "classifier": _eval_classifier,
        "diffusion-classifier": _eval_diffusion_classifier,
        "dc-zero": _eval_dc_zero,
    }
    evaluation = _evaluation(args)
    if args.calibrate and evaluation != "classifier":
        raise DiffclsError(
            "--calibrate applies to classifiers; the Diffusion Classifier fits its λ with --fit-temperature"
        )
    if args.noise_draws != 1 and evaluation != "dc-zero":
        raise DiffclsError("--noise-draws applies to Diffusion Classifier Zero (repcond-tune checkpoints)")
    dc_only = {"--early-stop": args.early_stop, "--timestep-weights": args.timestep_weights,
               "--fit-timestep-weights": args.fit_timestep_weights}  # fmt: skip
    for flag, value in dc_only.items():
        if value is not None and evaluation != "diffusion-classifier":
            raise DiffclsError(f"{flag} applies to the Diffusion Classifier (a ddpm or diffusers model)")
    if args.proposer and evaluation != "diffusion-classifier":
        raise DiffclsError("--proposer makes the Diffusion Classifier a hybrid; give it a ddpm or diffusers model")
    if args.ood_data and evaluation == "dc-zero":
        raise DiffclsError("--ood-data applies to classifiers and the Diffusion Classifier, not DC Zero")
    ood_probs = ood_probs_path(args.save_probs) if args.save_probs and args.ood_data else None
    # One writer per results file set; the checkpoint is only read, unless the Diffusion Classifier stores a
    # fitted temperature in it.
    folder = args.checkpoint or args.pretrained
    if args.fit_temperature and _is_zoo_folder(folder):
        raise DiffclsError(
            "--fit-temperature stores λ in the model folder, and zoo models are read-only: copy the folder "
            "(diffcls zoo list --paths) or pass --temperature"
        )
    written_folders = [folder] if args.fit_temperature and folder else []
    per_image = _per_image_path(args)
    ood_log = ood_log_path(per_image) if args.ood_data and evaluation == "diffusion-classifier" else None
    written_files = [args.results_file, args.save_probs, ood_probs, per_image, ood_log, args.fit_timestep_weights]
    with exclusive(written_folders, written_files, dist=dist):
        return runners[evaluation](args, dist, device)


def _per_image_path(args: argparse.Namespace) -> str:
    """The Diffusion Classifier's per-image JSONL: --per-image, else beside the results file."""
    return args.per_image or str(Path(args.results_file).with_suffix(".images.jsonl"))


def _evaluation(args: argparse.Namespace) -> str:
    """Which evaluation runner scores this command: the checkpoint's method's, or the Diffusion Classifier for a
    diffusers folder or ``--method diffusion-classifier``."""
    from diffcls.methods import method_of

    evaluation = method_of(args.checkpoint)[0].evaluation if args.checkpoint else None
    if evaluation == "dc-zero":
        return evaluation
    if args.pretrained or args.method == "diffusion-classifier":
        return "diffusion-classifier"
    if evaluation is None:
        raise DiffclsError("give --checkpoint DIR (a diffcls training folder) or --pretrained DIR (diffusers)")
    return evaluation


def _eval_classifier(args: argparse.Namespace, dist, device: str) -> int:
    from diffcls.eval.evaluate import EvalConfig, evaluate_classifier, write_results

    if args.start:
        raise DiffclsError("--start applies to the Diffusion Classifier; use --limit for classifiers")
    cfg = EvalConfig(
        checkpoint=args.checkpoint,
        data=args.data,
        split=args.split,
        sampler=_sampler_config(args),
        batch_size=args.batch_size,
        low_res=args.low_res,
        limit=args.limit,
        seed=args.seed,
        device=device,
        workers=args.workers,
        corruption=args.corruption,
        severity=args.severity,
        corruption_set=args.corruption_set,
        cache_dir=args.corruption_cache,
        calibrate=args.calibrate,
        ood_data=args.ood_data,
        ood_score=args.ood_score,
        ood_limit=args.ood_limit,
    )
    results, probs = evaluate_classifier(cfg, dist=dist)
    if not dist.is_main:
        return 0
    write_results(results, probs, args.results_file, args.save_probs)
    keys = ("top1", "top5", "nll", "brier", "ece", "aurc", "num_samples", "nfe_per_image", "ms_per_image")
    keys += ("temperature", "post_nll", "post_ece") if args.calibrate else ()
    keys += ("ood_score", "ood_auroc", "ood_aupr", "ood_fpr95") if args.ood_data else ()
    summary = {k: results[k] for k in keys}
    print(json.dumps(summary))
    return 0


def _eval_dc_zero(args: argparse.Namespace, dist, device: str) -> int:
    """Diffusion Classifier Zero on a repcond-tune checkpoint: at --timesteps, or at the best t of a --t-sweep
    on the held-out training images (lambda fitted there too). Rank 0 alone under torchrun."""
    from diffcls.eval.evaluate import write_results
    from diffcls.repcond.evaluate import evaluate_dc_zero, plot_t_sweep, run_t_sweep, sweep_temperature

    if not dist.is_main:
        return 0
    if args.t_sweep and args.timesteps:
        raise DiffclsError("give --t-sweep or --timesteps, not both")
    if args.corruption or args.low_res or args.start:
        raise DiffclsError("Diffusion Classifier Zero takes the clean split (no --corruption, --low-res, --start)")
    timesteps: list[int] = [500]
    temperature, sweep_rows = args.temperature or 1.0, None
    if args.timesteps:
        try:
            timesteps = [int(t) for t in args.timesteps.split(",")]
        except ValueError:
            raise DiffclsError(f"--timesteps takes integers like 300,500, got {args.timesteps!r}") from None
    if args.t_sweep:
        sweep = run_t_sweep(
            args.checkpoint,
            args.data,
            split="val",
            limit=None,
            seed=args.seed,
            batch_size=args.batch_size,
            device=device,
        )
        timesteps, sweep_rows = [sweep.best_t], sweep.rows()
        temperature = args.temperature or sweep_temperature(sweep)
        plot_t_sweep({args.checkpoint: sweep}, Path(args.results_file).with_suffix(".tsweep.png"))
    results = evaluate_dc_zero(
        args.checkpoint,
        args.data,
        split=args.split,
        timesteps=timesteps,
        aggregate=args.aggregate,
        limit=args.limit,
        temperature=temperature,
        seed=args.seed,
        batch_size=args.batch_size,
        device=device,
        noise_draws=args.noise_draws,
    )
    probs = results.pop("probs")
    results.update(checkpoint=args.checkpoint, data=args.data, t_sweep=sweep_rows)
    write_results(results, probs, args.results_file, args.save_probs)
    print(
        json.dumps(
            {k: results[k] for k in ("top1", "f1_macro", "nll", "ece", "num_samples", "nfe_per_image", "timesteps")}
        )
    )
    return 0


def _eval_diffusion_classifier(args: argparse.Namespace, dist, device: str) -> int:
    from diffcls.eval.diffusion_classifier import DCEvalConfig, evaluate_diffusion_classifier
    from diffcls.eval.evaluate import write_results

    schedule = _schedule(args)
    cfg = DCEvalConfig(
        data=args.data,
        checkpoint=args.checkpoint,
        pretrained=args.pretrained,
        split=args.split,
        schedule=schedule,
        loss=args.loss,
        batch_size=args.batch_size,
        start=args.start,
        limit=args.limit,
        seed=args.seed,
        device=device,
        low_res=args.low_res,
        corruption=args.corruption,
        severity=args.severity,
        corruption_set=args.corruption_set,
        cache_dir=args.corruption_cache,
        temperature=args.temperature,
        fit_temperature=args.fit_temperature,
        prompt_template=args.prompt_template,
        prompts_csv=args.prompts,
        ood_data=args.ood_data,
        ood_score=args.ood_score,
        ood_limit=args.ood_limit,
        proposer=args.proposer,
        proposer_top_k=args.proposer_top_k,
        proposer_sampler=_sampler_config(args) if args.proposer else None,
        early_stop=args.early_stop,
        early_stop_chunk=args.early_stop_chunk,
        timestep_weights=args.timestep_weights,
        fit_timestep_weights=args.fit_timestep_weights,
    )
    evaluated = evaluate_diffusion_classifier(cfg, _per_image_path(args), dist=dist)
    if evaluated is None:  # a rank other than 0 under torchrun: rank 0 writes
        return 0
    results, probs = evaluated
    write_results(results, probs, args.results_file, args.save_probs)
    print(
        json.dumps(
            {
                k: results[k]
                for k in (
                    "top1",
                    "top5",
                    "nll",
                    "ece",
                    "num_samples",
                    "nfe_per_image",
                    "seconds_per_image",
                    "temperature",
                    *(("ood_score", "ood_auroc", "ood_aupr", "ood_fpr95") if args.ood_data else ()),
                )
            }
        )
    )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from diffcls.eval.diffusion_classifier import predict_files_with_noise_model
    from diffcls.eval.evaluate import predict_files
    from diffcls.methods import method_of
    from diffcls.runtime.device import resolve_device

    device = str(resolve_device(args.device))
    if method_of(args.checkpoint)[0].evaluation == "diffusion-classifier":
        rows = predict_files_with_noise_model(args.checkpoint, args.images, args.top_k, _schedule(args), device,
                                              args.seed)  # fmt: skip
    else:
        rows = predict_files(args.checkpoint, args.images, args.top_k, _sampler_config(args), device, args.seed)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        preds = "  ".join(f"{p['class']} {p['probability']:.3f}" for p in row["predictions"])
        decided = row["prediction"]["class"]
        note = "" if decided == row["predictions"][0]["class"] else f"  (decision: {decided}, the survivor)"
        print(f"{row['image']}: {preds}{note}")
    return 0


def _budgets(given: list[str]) -> dict[str, int]:
    """``["didicm=80", ...]`` as ``{"didicm": 80}``; a malformed entry is a one-line error."""
    budgets = {}
    for item in given:
        key, _, epochs = item.partition("=")
        if not key or not epochs.isdigit() or int(epochs) < 1:
            raise DiffclsError(f"--budget takes KEY=EPOCHS with EPOCHS >= 1, got {item!r}")
        budgets[key] = int(epochs)
    return budgets


def cmd_bench(args: argparse.Namespace) -> int:
    from diffcls.bench import DCSettings, run_benchmark
    from diffcls.generative import parse_schedule
    from diffcls.runtime.distributed import init_distributed

    dc = None
    if args.diffusion_classifier:
        if args.dc_images < 1 or (args.dc_epochs is not None and args.dc_epochs < 1):
            raise DiffclsError("--dc-images and --dc-epochs must be >= 1")
        schedule = parse_schedule(args.dc_n_samples, args.dc_to_keep)
        dc = DCSettings(
            model=args.dc_model,
            epochs=args.dc_epochs,
            test_images=args.dc_images,
            n_samples=schedule.n_samples,
            to_keep=schedule.to_keep,
        )
    command = "diffcls " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("diffcls") else None
    dist = init_distributed(args.device)
    paths = run_benchmark(
        args.preset,
        args.data,
        args.output,
        args.device,
        args.workers,
        command=command,
        diffusion_classifier=dc,
        dist=dist,
        extra_contenders=tuple(args.extra_contenders),
        budgets=_budgets(args.budget),
        train_limit=args.train_limit,
        eval_limit=args.eval_limit,
        from_zoo=args.from_zoo,
    )
    if not dist.is_main:
        return 0
    print(f"report: {paths['report']}")
    for path in paths["plots"]:
        print(f"plot:   {path}")
    return 0


# ---------------------------------------------------------------------------------------------------------- zoo


def _is_zoo_folder(path: str | None) -> bool:
    from diffcls.zoo import is_zoo_folder

    return is_zoo_folder(path)


def cmd_zoo_list(args: argparse.Namespace) -> int:
    from diffcls.zoo import zoo_dir, zoo_entries

    entries = zoo_entries()
    if args.json:
        print(json.dumps({name: e.record for name, e in entries.items()}, indent=2))
        return 0
    if args.paths:
        for name, e in entries.items():
            print(f"{name}\t{e.folder}")
        return 0
    if not entries:
        print(f"the zoo at {zoo_dir()} is empty")
        return 0
    header = (
        "name",
        "data",
        "method",
        "model",
        "params",
        "readout",
        "NFE",
        "val top-1",
        "test top-1",
        "NLL",
        "ECE",
        "MB",
    )
    rows = [header]
    sizes = {name: e.size_bytes for name, e in entries.items()}  # walks each folder: once
    for name, e in entries.items():
        r, test = e.record, e.metrics["test"]
        rows.append(
            (
                name,
                r["data"],
                r["method"],
                r["model"],
                f"{r.get('params', 0) / 1e6:.2f}M",
                r.get("readout_label", "-"),
                str(r.get("nfe", "-")),
                f"{e.metrics['val']['top1']:.3f}",
                f"{test['top1']:.3f}",
                f"{test['nll']:.3f}",
                f"{test['ece']:.3f}",
                f"{sizes[name] / 1e6:.1f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    total = sum(sizes.values())
    print(f"{len(entries)} models, {total / 1e6:.1f} MB in {zoo_dir()}; test metrics on the whole test split")
    return 0


def cmd_zoo_reproduce(args: argparse.Namespace) -> int:
    from diffcls.zoo import zoo_entry
    from diffcls.zoo.compare import weight_differences

    entry = zoo_entry(args.name)
    if _is_zoo_folder(args.output):
        raise DiffclsError(f"--output {args.output} lies inside the zoo; reproduce into a folder of your own")
    argv = ["train", *entry.recipe, "--output", args.output, *(["--resume"] if args.resume else [])]
    print("diffcls " + " ".join(argv), flush=True)
    status = main(argv)
    if status != 0:
        return status
    diff = weight_differences(entry.folder, args.output)
    print(
        json.dumps({"entry": entry.name, **diff})
        + f"\n{diff['identical']}/{diff['tensors']} tensors bit-for-bit equal to zoo:{entry.name}, largest "
        f"difference {diff['max_abs_difference']:.3g}"
    )
    return 0


def cmd_zoo_verify(args: argparse.Namespace) -> int:
    import tempfile

    from diffcls.zoo import zoo_entry
    from diffcls.zoo.compare import metric_differences

    entry = zoo_entry(args.name)
    subset = entry.record["subset_images"]
    checks = [("val", ["--split", "val"]), ("test", [])] if args.full else [("test_subset", ["--limit", str(subset)])]
    agree = True
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.output or tmp)
        out.mkdir(parents=True, exist_ok=True)
        for key, extra in checks:
            results = out / f"{entry.name}-{key}.json"
            argv = entry.eval_command(*extra, "--results-file", str(results))
            print("diffcls " + " ".join(argv), flush=True)
            status = main(argv)
            if status != 0:
                return status
            for row in metric_differences(entry.metrics[key], json.loads(results.read_text())):
                agree &= row["agrees"]
                print(
                    f"  {key:<12} {row['metric']:<6} recorded {row['recorded']:.4f}  measured {row['measured']:.4f}"
                    f"  |difference| {row['difference']:.2g} (tolerance {row['tolerance']:.2g})"
                    f"  {'ok' if row['agrees'] else 'DIFFERS'}"
                )
    print(f"zoo:{entry.name}: {'agrees with its record' if agree else 'DIFFERS from its record'}")
    return 0 if agree else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DiffclsError as e:
        print(f"diffcls: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("diffcls: interrupted (checkpoints and results written so far are intact)", file=sys.stderr)
        return 130
    finally:
        if "torch" in sys.modules:  # leave torchrun's process group, if joined (--help never imports torch)
            from diffcls.runtime.distributed import shutdown_distributed

            shutdown_distributed()


if __name__ == "__main__":
    sys.exit(main())
