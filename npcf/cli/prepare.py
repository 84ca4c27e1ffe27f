"""`npcf prepare`: read ratings, split them, write a prepared directory."""
from __future__ import annotations

import click

from npcf import workflows
from npcf.cli.main import main
from npcf.cli.options import SEED, LocalPath, data_options
from npcf.cli.output import duplicates_note, progress_or_none, stats_table
from npcf.data.dataset import is_prepared


@main.command()
@data_options
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the split.")
@click.option("--out", required=True, type=LocalPath(file_okay=False),
              help="Directory to write the prepared data set to.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.pass_context
def prepare(ctx, data_options, seed, out, quiet):
    """Read ratings, split them and write a prepared directory (npz + id maps + stats)."""
    if data_options["data"] and is_prepared(data_options["data"]) and \
            ctx.get_parameter_source("seed") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError(f"--data {data_options['data']} is a prepared directory (its "
                               "split is fixed); --seed cannot be used with it")
    ds = workflows.prepare(out, dict(data_options, seed=seed), progress=progress_or_none(quiet))
    click.echo(stats_table(ds.stats))
    if ds.stats.get("duplicates_resolved"):
        click.echo(duplicates_note(ds.stats["duplicates_resolved"]))
    split = ds.stats["split"]
    seeded = "" if split.get("kind") == "temporal" or "seed" not in split else \
        f", seed {split['seed']}"
    click.echo(f"\nwrote {ds.path}/ (split: {split.get('kind')}{seeded})")
