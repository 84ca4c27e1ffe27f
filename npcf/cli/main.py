"""The ``npcf`` click group: every :class:`~npcf.errors.NpcfError` (and OS error on a
file) becomes one line on stderr and exit code 1; click's usage errors exit with 2."""
from __future__ import annotations

import click

from npcf._version import __version__
from npcf.errors import NpcfError, one_line


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NpcfError as err:
            raise click.ClickException(one_line(err)) from None
        except (OSError, MemoryError) as err:
            name = getattr(err, "filename", None)
            msg = f"{name}: {err.strerror}" if name and getattr(err, "strerror", None) else str(err)
            raise click.ClickException(one_line(msg)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
@click.version_option(package_name=None, message="npcf %(version)s", version=__version__)
def main():
    """npcf: deep-autoencoder collaborative filtering (NumPy/SciPy, ONNX)."""
