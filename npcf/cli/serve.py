"""`npcf serve`: recommendations over HTTP from an exported model (the ``serve`` extra)."""
from __future__ import annotations

import signal

import click

from npcf import rundir
from npcf.cli.main import main
from npcf.cli.options import Finite, LocalPath


@main.command()
@click.option("--model", type=LocalPath(dir_okay=False),
              default=str(rundir.DEFAULT_DIR / rundir.onnx_name()), show_default=True,
              help="An exported model (eval --generate).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--data", type=LocalPath(file_okay=False), default=None,
              help="Prepared directory: serves GET /users/{id}/recommendations (and its titles).")
@click.option("--movies", type=LocalPath(dir_okay=False), default=None,
              help="Titles file (movies.csv, movies.dat, u.item) [default: from --data].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="onnxruntime threads per worker [default: all cores].")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes (each loads the model).")
@click.option("--max_batch", type=click.IntRange(min=1, max=4096), default=64, show_default=True,
              help="Concurrent queries ranked in one onnxruntime call.")
@click.option("--max_wait_ms", type=Finite(min=0, max=1000), default=5.0, show_default=True,
              help="How long a batch waits, once it has one query, for the others the last "
                   "batch suggests are coming (a lone client never waits).")
@click.option("--pipelines", type=click.IntRange(min=1, max=64), default=1, show_default=True,
              help="Batches ranked at once, each on its own thread (one shared session): "
                   "queries arriving during a batch start the next one at once.")
@click.option("--max_body", type=click.IntRange(min=64), default=1 << 20, show_default=True,
              help="Largest request body in bytes (larger: 413).")
@click.option("--log_level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="warning", show_default=True, help="uvicorn's log level.")
def serve(model, host, port, data, movies, threads, workers, max_batch, max_wait_ms, pipelines,
          max_body, log_level):
    """Serve POST /recommend, POST /recommend/batch, GET /users/{id}/recommendations,
    GET /health and GET /model over HTTP."""
    from npcf.serving.server import serve as run  # the optional extra, loaded on use
    stopped = run(model, host, port, data=data, movies=movies, threads=threads, workers=workers,
        max_batch=max_batch, max_wait_ms=max_wait_ms, max_body=max_body, log_level=log_level,
        pipelines=pipelines,
        echo=lambda s: click.echo(s, err=True))
    if stopped is not None:             # the exit code a shell reports for the signal
        name = "Ctrl-C" if stopped == signal.SIGINT else signal.Signals(stopped).name
        click.echo(f"stopped ({name})", err=True)
        raise click.exceptions.Exit(128 + stopped)
