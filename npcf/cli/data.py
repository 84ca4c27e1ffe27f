"""`npcf prepare` and `npcf datasets`."""
from __future__ import annotations

import click

from npcf.cli.base import data_options, load_data, main, stats_table, table, _floats  # noqa: F401


@main.command()
@data_options
@click.option("--seed", default=0, show_default=True, help="Seed of the split.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory to write the prepared data set to.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def prepare(data, fmt, sep, columns, scale, split_kind, test_size, validation_size, holdout,
            train_file, test_file, seed, out, quiet):
    """Read ratings, split them and write a prepared directory (npz + id maps + stats)."""
    from npcf.data import save_prepared
    ds = load_data(data, fmt, sep, columns, scale, split_kind, test_size, validation_size,
                   holdout, train_file, test_file, seed, quiet)
    path = save_prepared(ds, out)
    click.echo(stats_table(ds.stats))
    click.echo(f"\nwrote {path}/ (split: {ds.stats['split'].get('kind')}, seed {seed})")


@main.command()
def datasets():
    """List the named datasets, their sizes and whether each is cached."""
    from npcf.data.download import cache_dir, list_datasets
    rows = [(d["name"], f"{d['size_bytes'] / 1e6:,.1f} MB" if d.get("size_bytes") else "?",
             "yes" if d["cached"] else "no", d["description"]) for d in list_datasets()]
    rows.insert(0, ("synthetic", "built in", "yes", "seeded synthetic MovieLens-like set"))
    click.echo(table(rows, ("name", "size", "cached", "description"), align="lrll"))
    click.echo(f"\ncache: {cache_dir()}  (set NPCF_DATA to move it)")



