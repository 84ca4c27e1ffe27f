#!/usr/bin/env python
"""Entry point: ``python cli.py COMMAND`` is the same CLI as the ``npcf`` console script."""
import sys

if __name__ == "__main__":
    try:
        from npcf.cli import main
    except KeyboardInterrupt:          # Ctrl-C while the libraries load
        print("\nAborted!" if sys.stderr.isatty() else "Aborted!", file=sys.stderr)
        sys.exit(130)
    main()
