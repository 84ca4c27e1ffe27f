"""`npcf plot`: training curves from history.csv (needs the optional matplotlib)."""
from __future__ import annotations

from pathlib import Path

import click

from npcf.cli.base import main


@main.command()
@click.argument("history", type=click.Path(dir_okay=False), default="models/history.csv")
@click.option("-o", "--out", type=click.Path(dir_okay=False), default=None,
              help="Image file (.png, .svg, .pdf) [default: loss.png beside HISTORY].")
@click.option("--title", default=None, help="Figure title.")
def plot(history, out, title):
    """Plot training and validation loss per epoch from HISTORY (train's history.csv)."""
    from npcf.plot import plot_history
    history = Path(history)
    out = Path(out) if out else history.parent / "loss.png"
    plot_history(history, out, title=title)
    click.echo(f"wrote {out}")
