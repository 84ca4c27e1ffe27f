"""`npcf train`: fit the autoencoder into a run directory."""
from __future__ import annotations

import os
import shlex
from pathlib import Path

import click

from npcf import rundir, workflows
from npcf.autoencoder import blend as blends
from npcf.autoencoder.estimator import (
    DEFAULTS,
    ITEM_BASED_DEFAULTS,
    SEARCH_SHARE,
    USER_BASED_DEFAULTS,
)
from npcf.cli.main import main
from npcf.cli.options import SEED, Finite, LocalPath, data_options, hyperparameter
from npcf.cli.options import layers as parse_layers
from npcf.cli.output import duplicates_note, progress_or_none, table, tuning_table
from npcf.errors import ParamError
from npcf.nn import activations, losses, noise, optim, schedules
from npcf.nn.network import INITS
from npcf.utils import parallel
from npcf.utils.memory import keep_freed_memory


def _default(name: str) -> str:
    return f"  [default: {DEFAULTS[name]}]"


def _threads(threads):
    """``--threads``, else NPCF_NUM_THREADS, else every core this process may use."""
    if threads is not None:
        return threads
    try:
        threads = parallel.env_threads()
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
    return threads


ACTIVATIONS = click.Choice(list(activations.ACTIVATIONS))
NOISES = click.Choice([k for k in noise.KINDS if k != "none"])


@main.command()
@data_options
@click.option("--denoiser/--basic", default=True, show_default=True,
              help="Corrupt the input (see --noise) or train a plain autoencoder.")
@click.option("--tied_weights/--not_tied", default=True, show_default=True,
              help="Decoder weights are the encoder's transposed (stored once).")
@click.option("--n_epochs", default=None, type=hyperparameter("n_epochs"),
              help="Maximum epochs." + _default("n_epochs"))
@click.option("--batch_size", default=None, type=hyperparameter("batch_size"),
              help="Users per batch." + _default("batch_size"))
@click.option("--verbose_epochs", default=1, show_default=True, type=click.IntRange(min=0),
              help="Print a summary line every N epochs (0: never).")
@click.option("--lr", default=None, type=hyperparameter("lr"),
              help="Learning rate." + _default("lr"))
@click.option("--layers", default=None, callback=parse_layers,
              help="Encoder sizes, e.g. 1000,500,100.  [default: "
                   f"{USER_BASED_DEFAULTS['layers'][0]}; {ITEM_BASED_DEFAULTS['layers'][0]} "
                   "item-based]")
@click.option("--activation", default=None, type=ACTIVATIONS, help="Hidden activation.")
@click.option("--output_activation", default=None, type=ACTIVATIONS, help="Output activation.")
@click.option("--optimizer", default=None, type=click.Choice(optim.NAMES))
@click.option("--init", default=None, type=click.Choice(INITS),
              help="Weight initialisation: glorot, or uniform +-1/sqrt(fan_in) (PyTorch's "
                   "Linear default, I-AutoRec's).  [default: uniform without the bias "
                   "residual, else glorot]")
@click.option("--loss", default=None, type=click.Choice(losses.LOSSES),
              help="mse: explicit ratings; multinomial: implicit top-N (Mult-DAE).")
@click.option("--noise", default=None, type=NOISES, help="Corruption for --denoiser.")
@click.option("--noise_level", default=None, type=hyperparameter("noise_level"),
              help="Masking probability or Gaussian standard deviation.")
@click.option("--dropout", default=None, type=hyperparameter("dropout"),
              help="Dropout rate on the code layer.")
@click.option("--weight_decay", default=None, type=hyperparameter("weight_decay"),
              help="L2 (sgd/adam) or decoupled (adamw) weight decay.")
@click.option("--clip_norm", default=None, type=hyperparameter("clip_norm"),
              help="Clip the global gradient norm.")
@click.option("--schedule", default=None, type=click.Choice(schedules.NAMES))
@click.option("--step_size", default=None, type=hyperparameter("step_size"),
              help="Epochs per step of --schedule step.")
@click.option("--gamma", default=None, type=hyperparameter("gamma"),
              help="Learning-rate factor every --step_size epochs of --schedule step.")
@click.option("--patience", default=None, type=hyperparameter("patience"),
              help="Stop after N epochs without validation improvement (0: never).")
@click.option("--item_based/--user_based", default=None,
              help="Item-based autoencoder (I-AutoRec) or user-based (the one that folds in "
                   "new users and exports to ONNX).  [default: user-based; chosen with --tune]")
@click.option("--dense_adam", is_flag=True, help="Exact dense Adam instead of lazy row updates.")
@click.option("--ensemble", default=None, type=hyperparameter("ensemble"),
              help="Fit K models (seeds SEED..SEED+K-1) and serve their mean as one network.")
@click.option("--threads", default=None, type=click.IntRange(min=1, max=parallel.MAX_THREADS),
              help="Threads for npcf's sparse products and optimizer (BLAS has its own).  "
                   "[default: NPCF_NUM_THREADS, else all cores]")
@click.option("--seed", default=0, show_default=True, type=SEED,
              help="Seed of the split and the model.")
@click.option("--out", default=str(rundir.DEFAULT_DIR), show_default=True,
              type=LocalPath(file_okay=False),
              help="Output directory for the checkpoint, history and metrics.")
@click.option("--tune", type=click.Choice(["auto", "off"]), default="auto", show_default=True,
              help="auto: choose every hyperparameter not given here on the validation part "
                   "(successive halving; trials in OUT/tuning.csv); off: train exactly the "
                   "given options.")
@click.option("--tune_budget", type=Finite(min=0, min_open=True), default=None,
              help=f"Seconds the search and the cross-fitting may take (the search is cut "
                   f"at {SEARCH_SHARE:.0%} of them when cross-fitting may follow).  "
                   f"[default: {workflows.TUNE_BUDGET:g}]")
@click.option("--blend", type=click.IntRange(min=1, max=32), default=None,
              help="Blend up to this many of the searched configurations (cross-fitted: "
                   "plus the bias model alone and item neighbours; a user-based choice with "
                   "user-based networks only, so it still folds in and exports) "
                   "(1: never; --user_based models are never blended).  "
                   f"[default: {workflows.BLEND}]")
@click.option("--folds", type=click.IntRange(min=1, max=20), default=None,
              help="Refit the configurations to blend on this many folds of the training and "
                   "validation ratings and fit the blend on their out-of-fold predictions "
                   "(1: blend on held-out halves of the validation part instead).  "
                   f"[default: {workflows.FOLDS}]")
@click.option("--resume", is_flag=True,
              help="Continue the interrupted --tune off run in --out (same options; its "
                   "data/ unless --data is given).")
@click.option("--overwrite", is_flag=True,
              help="Replace an interrupted run in --out instead of refusing it.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or epoch lines.")
@click.pass_context
def train(ctx, data_options, denoiser, tied_weights, dense_adam, threads, seed, out, resume,
          overwrite, verbose_epochs, quiet, tune, tune_budget, blend, folds, **given):
    """Train the autoencoder; writes OUT/model.npz, model.json, history.csv, metrics.json
    (and tuning.csv: by default the hyperparameters not given are chosen on validation)."""
    if tune == "off" and tune_budget is not None:
        raise ParamError("tune_budget", "caps the hyperparameter search and cross-fitting; "
                         "with --tune off there is none: leave it out")
    params = {k: v for k, v in given.items() if v is not None}
    params.update(denoise=denoiser, tied=tied_weights, seed=seed, lazy=not dense_adam)
    names = {"denoiser": "denoise", "tied_weights": "tied", "dense_adam": "lazy"}
    keep_freed_memory()     # the same temporaries every step: no page faults for them
    fixed = {names.get(p, p) for p in ctx.params
             if ctx.get_parameter_source(p) == click.core.ParameterSource.COMMANDLINE} \
        & set(DEFAULTS)
    result = workflows.train(params, out, dict(data_options, seed=seed), tune=tune == "auto",
                             fixed=fixed, tune_budget=tune_budget or workflows.TUNE_BUDGET,
                             blend=blend, folds=folds,
                             resume=resume, overwrite=overwrite, threads=_threads(threads),
                             progress=progress_or_none(quiet),
                             verbose_epochs=0 if quiet else verbose_epochs, echo=click.echo)
    if not quiet:
        click.echo("")
    if result["tuning"] and not quiet:
        click.echo(tuning_table(result["tuning"], result["tuning_trials"]))
        click.echo("")
    if result.get("blend") and not quiet:
        click.echo(blends.describe(result["blend"]))
        if result["blend"].get("used") and not result["hyperparameters"]["item_based"]:
            click.echo("(user-based: every member folds in new users' ratings, and eval "
                       "--generate exports the blend as one graph)")
        click.echo("")
    if result.get("duplicates_resolved"):
        click.echo(duplicates_note(result["duplicates_resolved"]))
    click.echo(table([(k, v) for k, v in result["test"].items()], ("test", "value"), "lr"))
    click.echo(f"\ncheckpoint: {result['model_path']}")
    model = "" if Path(out) == rundir.DEFAULT_DIR else f" --model {shlex.quote(str(result['model_path']))}"
    if result["hyperparameters"]["item_based"]:
        click.echo(f"next: python cli.py eval --evaluate{model}   (an item-based model does not "
                   "fold in new users or export; train --user_based to serve)")
    else:
        click.echo(f"next: python cli.py eval --generate{model}   (export "
                   f"{Path(out) / rundir.onnx_name()})")
