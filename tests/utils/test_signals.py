"""Signals acted on at a point of the program's choosing (npcf.utils.signals)."""
from __future__ import annotations

import os
import signal
import time

import pytest

from npcf.utils.signals import DeferredSignals


def test_signals_are_deferred_to_the_check_and_an_ignored_one_stays_ignored():
    with pytest.raises(KeyboardInterrupt):
        with DeferredSignals() as signals:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)                  # noted, not raised here
            assert signals.raised and signals.signum == signal.SIGINT
            signals.check()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with DeferredSignals() as signals:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            signals.check()                   # ignored before: still ignored
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)


def test_a_second_signal_acts_at_once():
    with pytest.raises(KeyboardInterrupt):
        with DeferredSignals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            pytest.fail("the second Ctrl-C did not stop the block")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
