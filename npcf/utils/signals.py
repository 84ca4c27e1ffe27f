"""Ctrl-C and SIGTERM acted on at a point of the program's choosing, not wherever they land
(a signal raised inside a garbage-collector callback is ignored by Python and lost)."""
from __future__ import annotations

import signal
import threading


class DeferredSignals:
    """Context manager: the first SIGINT, and the first SIGTERM where the process handles
    it (the CLI does; a library caller's default handler is left alone), only noted as
    ``signum``; a second one acts at once. A signal already ignored stays ignored; off
    the main thread nothing is installed. :meth:`check` raises a noted signal through
    the handler that was there (KeyboardInterrupt for Ctrl-C); the handlers are back
    when the block ends."""

    def __enter__(self):
        self.signum, self._old = None, {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handler = signal.getsignal(sig)
                if handler is not signal.SIG_IGN and (sig == signal.SIGINT or callable(handler)):
                    self._old[sig] = signal.signal(sig, self._note)
        return self

    @property
    def raised(self) -> bool:
        return self.signum is not None

    def _note(self, signum, frame):
        if self.raised:
            self._raise(signum)
        self.signum = signum

    def check(self) -> None:
        """Raise the noted signal (as the handler before the block would have), if any."""
        if self.raised:
            self._raise(self.signum)

    def _raise(self, signum: int) -> None:
        self._restore()
        old = self._old.get(signum)
        if callable(old) and old is not signal.default_int_handler:
            old(signum, None)
        raise KeyboardInterrupt

    def _restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def __exit__(self, *exc):
        self._restore()
