"""`npcf recommend`: top-k movies for a known user or a new user's ratings."""
from __future__ import annotations

import json

import click

from npcf import workflows
from npcf.cli.main import main
from npcf.cli.options import LocalPath, rating_pairs
from npcf.cli.output import short, table
from npcf.utils.format import decimal


@main.command()
@click.option("--model", type=LocalPath(), default=None,
              help="An exported model (eval --generate), a checkpoint, or a run directory "
                   "(its model.onnx, else model.npz)  [default: models/].")
@click.option("--user", default=None, help="Raw user id from the training data.")
@click.option("--ratings", default=None, metavar="ID:RATING,...", callback=rating_pairs,
              help="A (new) user's ratings, e.g. '1:5,260:4.5' (an id may hold ':'; ids "
                   "holding ',' as JSON: '[[\"film 1, the\", 5]]' or '{\"film 1, the\": 5}'; "
                   "'[]': no ratings yet, a cold-start list).")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(min=1),
              help="Number of recommendations.")
@click.option("--movies", type=LocalPath(dir_okay=False), default=None,
              help="Titles file (movies.csv, movies.dat, u.item) [default: from the data].")
@click.option("--data", default=None, help="Prepared directory holding --user's ratings "
              "[default: the one recorded by train].")
@click.option("--include_seen", is_flag=True, help="Allow movies the user already rated.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def recommend(model, user, ratings, k, movies, data, include_seen, as_json):
    """Top-k movies for a known user (--user) or a new one (--ratings)."""
    if (user is None) == (ratings is None):
        raise click.UsageError("give exactly one of --user or --ratings")
    recs = workflows.recommend(model, user=user, ratings=ratings, k=k, movies=movies, data=data,
                               include_seen=include_seen)
    if as_json:
        click.echo(json.dumps(recs))
        return
    rows = [(r["rank"], str(r["movie_id"]), short(r["title"]), decimal(r["score"], 3))
            for r in recs]
    click.echo(table(rows, ("rank", "movie", "title", "score"), align="rrlr"))
