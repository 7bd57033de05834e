"""Ctrl-C (SIGINT) and SIGTERM stop a run as interrupted, never as finished.

Ray Tune's own SIGINT handler ends ``Tuner.fit()`` normally, so a partial sweep would look done.
``tuning.run`` installs ``StopSignals`` instead (with ``TUNE_DISABLE_SIGINT_HANDLER=1``): a
signal is recorded; inside a fit it asks Tune to save its state and stop (Tune's SIGUSR1
handler); elsewhere it raises ``KeyboardInterrupt``. The pipeline calls ``check()`` after every
fit and raises ``RunInterrupted`` rather than go on with partial results.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any, Iterator

log = logging.getLogger(__name__)
STOPPING = (signal.SIGINT, signal.SIGTERM)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class RunInterrupted(Exception):
    """The run was stopped by a signal; its saved state can continue with ``--resume``."""


class StopSignals:
    """Records SIGINT/SIGTERM; ``received`` is the first signal's name, None before any."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.fitting = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignals]:
        """Handle SIGINT and SIGTERM in this (main) thread inside the block; the previous
        handlers come back after it, and ``received`` is cleared."""
        self.received = None
        previous = {sig: signal.signal(sig, self._handle) for sig in STOPPING}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.received = None  # a later run in this process starts clean

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.received is None
        self.received = self.received or signal.Signals(signum).name
        tune_stop = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
        if first and self.fitting and callable(tune_stop):
            log.warning("%s received: saving the sweep's state and stopping (again to stop at once)",
                        self.received)
            tune_stop(signum, frame)  # Tune saves its experiment state and returns from fit()
            return
        raise KeyboardInterrupt(self.received)

    def check(self) -> None:
        """Raise ``RunInterrupted`` if a signal came."""
        if self.received is not None:
            raise RunInterrupted(self.received)


STOP = StopSignals()


@contextlib.contextmanager
def fitting() -> Iterator[None]:
    """Around ``Tuner.fit()``: a signal asks Tune to stop; afterwards ``check()`` raises.

    Until this fit installs Tune's SIGUSR1 handler, one left by an earlier fit must not take the
    signal (it would stop nothing), so SIGUSR1 is ignored in between."""
    if hasattr(signal, "SIGUSR1") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    STOP.fitting = True
    try:
        yield
    finally:
        STOP.fitting = False
    STOP.check()
