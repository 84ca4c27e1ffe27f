"""`npcf plot`: training curves from history.csv (needs the optional matplotlib)."""
from __future__ import annotations

from pathlib import Path

import click

from npcf import rundir
from npcf.cli.main import main
from npcf.cli.options import LocalPath
from npcf.curves import plot_history


@main.command()
@click.argument("history", type=LocalPath(dir_okay=False),
                default=str(rundir.DEFAULT_DIR / rundir.HISTORY_CSV))
@click.option("-o", "--out", type=LocalPath(dir_okay=False), default=None,
              help="Image file (.png, .svg, .pdf) [default: loss.png beside HISTORY].")
@click.option("--title", default=None, help="Figure title.")
def plot(history, out, title):
    """Plot training and validation loss per epoch from HISTORY (train's history.csv)."""
    history = Path(history)
    out = plot_history(history, Path(out) if out else history.parent / "loss.png", title=title)
    click.echo(f"wrote {out}")
