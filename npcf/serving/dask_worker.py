"""Set-up of npcf's Dask worker processes (a ``distributed.worker.preload`` module).

A Ctrl-C at the terminal goes to the whole process group: the workers ignore it, so
only the process that started the cluster acts on it and stops them (instead of each
worker printing its traceback)."""
from __future__ import annotations

import signal
import threading


def dask_setup(worker) -> None:
    """Called by Dask in each worker process as it starts."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
