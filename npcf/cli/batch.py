"""`npcf batch-recommend`: top-k movies for every user, on Dask distributed."""
from __future__ import annotations

import click

from npcf.cli.main import main
from npcf.cli.options import Finite, LocalPath, reader_options
from npcf.cli.output import counted, duplicates_note, progress_or_none
from npcf.serving import batch


@main.command("batch-recommend")
@click.option("--model", required=True, type=LocalPath(dir_okay=False),
              help="An exported model (.onnx) every worker can read.")
@click.option("--data", required=True, metavar="PATH",
              help="The users' ratings: a ratings file, a prepared directory or Parquet.")
@click.option("--out", required=True, type=LocalPath(file_okay=False),
              help="Directory for part-NNNNN.parquet (userId, rank, movieId, score).")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1),
              help="Recommendations per user (movies the user rated are left out).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="An existing Dask scheduler [default: start a local cluster].")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1),
              help="Worker processes of the local cluster (without --scheduler).")
@click.option("--partition_users", default=batch.PARTITION_USERS, show_default=True,
              type=click.IntRange(min=1), help="Users per task (bounds a worker's memory).")
@click.option("--connect_timeout", default=batch.CONNECT_TIMEOUT, show_default=True,
              type=Finite(min=0.1), help="Seconds to wait for --scheduler.")
@reader_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def batch_recommend(model, data, out, k, scheduler, workers, partition_users, connect_timeout,
                    quiet, reader_options):
    """Top-k unseen movies for every user of --data, one Parquet file per partition."""
    given = click.get_current_context().get_parameter_source("workers")
    if scheduler and given is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--workers is for the local cluster; leave it out with --scheduler")
    s = batch.batch_recommend(model, data, out, k=k, scheduler=scheduler, workers=workers,
                              partition_users=partition_users, timeout=connect_timeout,
                              progress=progress_or_none(quiet), reader_options=reader_options)
    rss = max(s["peak_rss_mb"].values(), default=0.0)
    click.echo(f"{counted(s['users'], 'user')}, {counted(s['rows'], 'recommendation')} in "
               f"{counted(s['partitions'], 'partition')} ({s['seconds']:.1f} s, "
               f"{s['users'] / max(s['seconds'], 1e-9):,.0f} users/s, peak RSS per worker "
               f"{rss:,.0f} MB)")
    if s["users_without_ratings"]:
        click.echo(f"left out {counted(s['users_without_ratings'], 'user')} with no rating in "
                   "--data (nothing to rank from; every such user would get the same "
                   "cold-start list)")
    if s["unknown_ratings"]:
        n = s["users_without_known_movies"]
        click.echo(f"dropped {counted(s['unknown_ratings'], 'rating')} of movies the model does "
                   f"not know ({counted(n, 'user')} had no known movie)")
    if s["duplicates_resolved"]:
        click.echo(duplicates_note(s["duplicates_resolved"]))
    click.echo(f"wrote {s['out']}/")
