"""Turn Ctrl-C and SIGTERM into a polite request: finish the step, checkpoint, then stop."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


class GracefulStop:
    """Context manager; ``received`` holds the signal number once one arrives.

    A second Ctrl-C raises KeyboardInterrupt at once, for a user who cannot wait, unless
    ``patient``: a process started by torchrun receives Ctrl-C from the terminal and again
    from torchrun, which kills it anyway if it takes too long, and must stop at the same step
    as the others. Outside the main thread signal handlers cannot be installed, so it does
    nothing.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self, log: Callable[[str], None] = print, *, patient: bool = False):
        self.log = log
        self.patient = patient
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:  # asked twice: stop now (a checkpoint is still written)
            if self.patient:
                return
            raise KeyboardInterrupt
        self.received = signum
        self.log(f"received {signal.Signals(signum).name}: finishing this step and writing a "
                 "checkpoint (Ctrl-C again to abort at once)")

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                signum = getattr(signal, name, None)
                if signum is not None:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
