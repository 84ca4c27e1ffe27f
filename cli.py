#!/usr/bin/env python
"""Entry point: ``python cli.py COMMAND`` is the same CLI as the ``npcf`` console script."""
from npcf.cli import main

if __name__ == "__main__":
    main()
