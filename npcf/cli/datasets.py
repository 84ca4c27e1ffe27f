"""`npcf datasets`: the named datasets, their sizes and whether each is cached."""
from __future__ import annotations

import click

from npcf.cli.main import main
from npcf.cli.output import table
from npcf.data.download import cache_dir, list_datasets
from npcf.data.source import SYNTHETIC


@main.command()
def datasets():
    """List the named datasets, their sizes and whether each is cached."""
    rows = [(d["name"], f"{d['size_bytes'] / 1e6:,.1f} MB" if d.get("size_bytes") else "?",
             "yes" if d["cached"] else "no", d["description"]) for d in list_datasets()]
    rows.insert(0, (SYNTHETIC, "built in", "yes", "seeded synthetic MovieLens-like set"))
    click.echo(table(rows, ("name", "size", "cached", "description"), align="lrll"))
    click.echo(f"\ncache: {cache_dir()}  (set NPCF_DATA to move it)")
