"""`npcf eval`: --generate (export to ONNX), --evaluate (metrics), --baselines."""
from __future__ import annotations

import shlex

import click

from npcf import workflows
from npcf.cli.main import main
from npcf.cli.options import (
    READER_KEYS,
    Finite,
    LocalPath,
    cutoffs,
    hyperparameter,
    json_target,
    reader_options,
)
from npcf.cli.output import compare_table, examples_text, metrics_table, num, progress_or_none, size, summary
from npcf.serving.export import PRECISIONS
from npcf.utils.files import write_json


@main.command("eval")
@click.option("--generate", "mode", flag_value="generate",
              help="Export the checkpoint to ONNX and check it against the NumPy forward.")
@click.option("--evaluate", "mode", flag_value="evaluate",
              help="Score a model (.onnx or .npz) on a test split.")
@click.option("--baselines", "mode", flag_value="baselines",
              help="Fit the baselines (global mean, biases, popularity, EASE) on --data's "
                   "training part and score them side by side.")
@click.option("--model", type=LocalPath(), default=None,
              help="--generate: checkpoint [default: models/model.npz]; --evaluate: "
                   "model.onnx, model.npz or a run directory (its model.onnx, else "
                   "model.npz) [default: models/].")
@click.option("--batch_size", default=256, show_default=True, type=click.IntRange(min=1),
              help="Users per batch (parity check / evaluation).")
@click.option("--top_k", default=None, type=click.IntRange(min=0),
              help="--generate: add top_items/top_scores outputs (0: scores only).  "
                   "[default: 10, at most the number of movies]")
@click.option("--sparse_input", is_flag=True,
              help="--generate: take (item_idx, item_rating) instead of a dense row.")
@click.option("--raw_ids", is_flag=True,
              help="--generate: take (movie_id, rating) and return top_movie_ids: raw movie "
                   "ids in and out, unknown ids dropped and counted (n_unknown); implies "
                   "--sparse_input. Integer movie ids only.")
@click.option("--triton", type=LocalPath(file_okay=False), default=None,
              help="--generate: also write a Triton model repository there "
                   "(DIR/NAME/1/model.onnx, DIR/NAME/config.pbtxt).")
@click.option("--triton_name", default=None,
              help="--generate --triton: the model's name [default: the .onnx file's stem].")
@click.option("--triton_max_batch", default=256, show_default=True, type=click.IntRange(min=1),
              help="--generate --triton: max_batch_size of the Triton config.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32",
              show_default=True, help="--generate: float32, float16 weights (about half "
              "the file; a stack's neighbour similarities are float16 in both), or int8 "
              "weights with per-user activation scales (one network only, not a stack).")
@click.option("--popularity_penalty", default=None, type=hyperparameter("popularity_penalty"),
              help="--generate: rank by score - beta * log(1 + item popularity) "
                   "[default: the model's, 0].")
@click.option("--out", type=LocalPath(dir_okay=False), default=None,
              help="--generate: output file [default: beside the checkpoint].")
@click.option("--data", default=None, help="--evaluate/--baselines: prepared directory with "
              "the test split [default: the one recorded by train].")
@click.option("-k", "ks", default=None, callback=cutoffs, metavar="K[,K...]",
              help="--evaluate/--baselines: cut-offs for ranking metrics  [default: 10,20,100, "
                   "those within the catalogue].")
@click.option("--threshold", type=Finite(), default=None,
              help="--evaluate/--baselines: held-out ratings >= this are relevant for top-N "
                   "[default: 0.8 x the rating scale's maximum (4 of 5 stars; the observed "
                   "maximum without a declared scale); 0 (on a scale reaching below 0: at "
                   "most its minimum): every held-out item].")
@click.option("--json", "json_out", type=LocalPath(dir_okay=False), default=None,
              callback=json_target,
              help="--evaluate/--baselines: also write the metrics as JSON.")
@reader_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def eval_cmd(mode, model, batch_size, top_k, sparse_input, raw_ids, triton, triton_name,
             triton_max_batch, precision, popularity_penalty, out, data, ks, threshold, json_out,
             quiet, reader_options):
    """Export a trained model to ONNX (--generate), evaluate one (--evaluate), or score the
    classic baselines on the same split (--baselines)."""
    if mode is None:
        raise click.UsageError("choose --generate, --evaluate or --baselines")
    _check_mode_options(click.get_current_context(), mode)
    progress = progress_or_none(quiet)
    if mode == "generate":
        r = workflows.export_model(model, out, batch_size=batch_size, top_k=top_k,
                                   sparse_input=sparse_input, precision=precision,
                                   popularity_penalty=popularity_penalty, raw_ids=raw_ids,
                                   triton=triton, triton_name=triton_name,
                                   triton_max_batch=triton_max_batch)
        p = r["parity"]
        topk = f", top-{r['top_k']}" if r["top_k"] else ""
        click.echo(f"wrote {r['path']}  ({size(r['bytes'])}, opset {r['opset']}, {precision}, "
                   f"{r['signature']} input{topk})")
        click.echo(f"parity vs NumPy on {p['n_users']} users: max |diff| {p['max_abs_diff']:.2e}, "
                   f"relative {p['relative']:.2e} (ok)")
        if r["triton"]:
            t = r["triton"]
            click.echo(f"wrote Triton model {t['name']!r}: {t['config']}, {t['model']}")
        click.echo(f"next: python cli.py recommend --model {shlex.quote(str(r['path']))} --user <id>")
        return
    if mode == "baselines":
        r = workflows.compare_baselines(data, ks=ks, threshold=threshold, batch_size=batch_size,
                                        progress=progress, reader_options=reader_options,
                                        log=None if quiet else lambda s: click.echo(s, err=True))
        click.echo(f"baselines on: {r['data']}")
        click.echo(f"protocol: {r['protocol']}")
        click.echo(summary(next(iter(r["models"].values()))))
        click.echo("")
        click.echo(compare_table(r["models"], r["ks"]))
        chosen = [f"{label} {r['models'][n]['params'][key]:g}" for n, label, key in
                  (("ease", "EASE lambda", "lambda"), ("biases", "biases reg", "reg"))
                  if n in r["models"]]
        if chosen:
            click.echo(f"\nchosen on validation: {', '.join(chosen)}")
    else:
        r = workflows.evaluate_model(model, data, batch_size=batch_size, ks=ks,
                                     threshold=threshold, progress=progress)
        for warning in r["warnings"]:
            click.echo(f"warning: {warning}", err=True)
        penalty = (f", ranked with popularity penalty {r['popularity_penalty']:g}"
                   if r["popularity_penalty"] else "")
        click.echo(f"model: {r['model']} ({r['format']}, {r['loss']} loss{penalty})")
        click.echo(f"data: {r['data']}")
        click.echo(f"protocol: {r['protocol']}")
        click.echo(summary(r))
        if r["loss"] == "mse":
            click.echo(f"RMSE {num(r['rmse'])}   MAE {num(r['mae'])}")
        click.echo("")
        click.echo(metrics_table(r, r["ks"]))
        if r["examples"]:
            click.echo("")
            click.echo(examples_text(r["examples"]))
    if json_out:
        write_json(json_out, r)
        click.echo(f"\nwrote {json_out}")


#: the options of each mode (besides --quiet); any other one given is refused
MODE_OPTIONS = {
    "generate": ("model", "batch_size", "top_k", "sparse_input", "raw_ids", "triton",
                 "triton_name", "triton_max_batch", "precision", "popularity_penalty", "out"),
    "evaluate": ("model", "batch_size", "data", "ks", "threshold", "json_out"),
    "baselines": ("data", "batch_size", "ks", "threshold", "json_out") + READER_KEYS,
}


def _check_mode_options(ctx, mode: str) -> None:
    """A usage error for an option the chosen mode would ignore."""
    src = click.core.ParameterSource.COMMANDLINE
    stray = [p for p in ctx.command.params if p.name not in MODE_OPTIONS[mode] + ("mode", "quiet")
             and ctx.get_parameter_source(p.name) == src]
    if stray:
        raise click.UsageError(f"{stray[0].opts[0]} does nothing with --{mode}; leave it out "
                               f"(it is an option of --{_modes_of(stray[0].name)})")


def _modes_of(name: str) -> str:
    return "/--".join(m for m, opts in MODE_OPTIONS.items() if name in opts)
