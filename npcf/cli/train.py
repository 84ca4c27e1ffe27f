"""`npcf train`."""
from __future__ import annotations

import click

from npcf.cli.base import data_options, load_data, main, stats_table, table, _floats  # noqa: F401


def _layers(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected sizes like 1000,500,100, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"layer sizes must be positive, got {text!r}")
    return sizes


@main.command()
@data_options
@click.option("--denoiser/--basic", default=True, show_default=True,
              help="Corrupt the input (see --noise) or train a plain autoencoder.")
@click.option("--tied_weights/--not_tied", default=True, show_default=True,
              help="Decoder weights are the encoder's transposed (stored once).")
@click.option("--n_epochs", default=None, type=int, help="Maximum epochs.  [default: 40]")
@click.option("--batch_size", default=None, type=int, help="Users per batch.  [default: 64]")
@click.option("--verbose_epochs", default=1, show_default=True, type=int,
              help="Print a summary line every N epochs (0: never).")
@click.option("--lr", default=None, type=float, help="Learning rate.  [default: 0.001]")
@click.option("--layers", default=None, help="Encoder sizes, e.g. 1000,500,100.  [default: 256; 128 item-based]")
@click.option("--activation", default=None, type=click.Choice(
    ["relu", "selu", "elu", "sigmoid", "tanh", "identity"]), help="Hidden activation.")
@click.option("--output_activation", default=None, type=click.Choice(
    ["relu", "selu", "elu", "sigmoid", "tanh", "identity"]), help="Output activation.")
@click.option("--optimizer", default=None,
              type=click.Choice(["sgd", "momentum", "nesterov", "adam", "adamw"]))
@click.option("--loss", default=None, type=click.Choice(["mse", "multinomial"]),
              help="mse: explicit ratings; multinomial: implicit top-N (Mult-DAE).")
@click.option("--noise", default=None,
              type=click.Choice(["masking", "gaussian", "multiplicative"]),
              help="Corruption for --denoiser.")
@click.option("--noise_level", default=None, type=float,
              help="Masking probability or Gaussian standard deviation.")
@click.option("--dropout", default=None, type=float, help="Dropout rate on the code layer.")
@click.option("--weight_decay", default=None, type=float,
              help="L2 (sgd/adam) or decoupled (adamw) weight decay.")
@click.option("--clip_norm", default=None, type=float, help="Clip the global gradient norm.")
@click.option("--schedule", default=None, type=click.Choice(["none", "step", "cosine"]))
@click.option("--step_size", default=None, type=int, help="Epochs per step of --schedule step.")
@click.option("--gamma", default=None, type=float, help="Decay factor of --schedule step.")
@click.option("--patience", default=None, type=int,
              help="Stop after N epochs without validation improvement (0: never).")
@click.option("--item_based", is_flag=True, default=None,
              help="Item-based autoencoder (I-AutoRec) instead of user-based.")
@click.option("--dense_adam", is_flag=True, help="Exact dense Adam instead of lazy row updates.")
@click.option("--ensemble", default=None, type=click.IntRange(min=1),
              help="Fit K models (seeds SEED..SEED+K-1) and serve their mean as one network.")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="Threads for npcf's sparse products and optimizer (BLAS has its own).  "
                   "[default: NPCF_NUM_THREADS, else all cores]")
@click.option("--seed", default=0, show_default=True, help="Seed of the split and the model.")
@click.option("--out", default="models", show_default=True, type=click.Path(file_okay=False),
              help="Output directory for the checkpoint, history and metrics.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or epoch lines.")
def train(data, fmt, sep, columns, scale, split_kind, test_size, validation_size, holdout,
          train_file, test_file, denoiser, tied_weights, n_epochs, batch_size, verbose_epochs,
          lr, layers, activation, output_activation, optimizer, loss, noise, noise_level,
          dropout, weight_decay, clip_norm, schedule, step_size, gamma, patience, item_based,
          dense_adam, ensemble, threads, seed, out, resume, quiet):
    """Train the autoencoder; writes OUT/model.npz, model.json, history.csv, metrics.json."""
    import os

    from npcf.utils import parallel
    from npcf.workflows import run_training
    if threads is None:
        try:
            threads = parallel.env_threads()
        except ValueError as err:
            raise click.UsageError(str(err)) from None
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
    given = dict(n_epochs=n_epochs, batch_size=batch_size, lr=lr, activation=activation,
                 output_activation=output_activation, optimizer=optimizer, loss=loss,
                 noise=noise, noise_level=noise_level, dropout=dropout,
                 weight_decay=weight_decay, clip_norm=clip_norm, schedule=schedule,
                 step_size=step_size, gamma=gamma, patience=patience, item_based=item_based,
                 ensemble=ensemble)
    params = {k: v for k, v in given.items() if v is not None}
    if layers is not None:
        params["layers"] = _layers(layers)
    params.update(denoise=denoiser, tied=tied_weights, seed=seed, lazy=not dense_adam)
    ds = load_data(data, fmt, sep, columns, scale, split_kind, test_size, validation_size,
                   holdout, train_file, test_file, seed, quiet)
    with parallel.using(threads):
        result = run_training(ds, params, out, resume=resume, quiet=quiet,
                              verbose_epochs=0 if quiet else verbose_epochs, echo=click.echo)
    if not quiet:
        click.echo("")
    click.echo(table([(k, v) for k, v in result["test"].items()], ("test", "value"), "lr"))
    click.echo(f"\ncheckpoint: {result['model_path']}")
    click.echo(f"next: python cli.py eval --generate   (export {out}/model.onnx)")


