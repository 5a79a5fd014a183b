"""SIGTERM and SIGINT from the first moment of a `kubezeek` process (imports only the standard library).

Python starts, then click and the verb's module are imported (about 0.1 s, more on a loaded
node) before a command can install its own handlers (`stop_on_signals`). A signal in that
window used to kill the process the default way: rc -15 for SIGTERM, a KeyboardInterrupt or
click's "Aborted!" for SIGINT. `catch_early()` runs first in the console entry point and only
remembers the signal. Then, once the verb is known:

* a verb that handles signals itself (`enrich`, `run`, `inventory record`: marked with
  `owns_signals`) finds the signal in `pending()` and stops cleanly at once (exit 0);
* any other verb gets the default behaviour back (`hand_back()`), and a remembered signal is
  raised again, so Ctrl-C during start-up still interrupts `kubezeek query`.

Only the interpreter's own start-up (before any kubezeek code runs) is still uncovered.
"""

from __future__ import annotations

import signal
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_received: list[int] = []
_previous: dict[int, object] = {}  # the handlers catch_early() replaced (empty: it did not run)


def _remember(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)


def catch_early() -> None:
    """Remember SIGTERM/SIGINT instead of dying of them (until a verb takes over or hands back)."""
    for sig in SIGNALS:
        _previous[sig] = signal.signal(sig, _remember)


def pending() -> int | None:
    """The first signal remembered since start-up, or None."""
    return _received[0] if _received else None


def hand_back() -> None:
    """Default behaviour again for a verb that does not handle signals itself; a signal that came
    during start-up is raised again now (so it interrupts, as it would have)."""
    previous = dict(_previous)
    _previous.clear()
    for sig, handler in previous.items():
        if signal.getsignal(sig) is _remember:
            signal.signal(sig, handler)  # type: ignore[arg-type]
    if previous and _received:
        signal.raise_signal(_received.pop(0))  # ignored again if it was ignored (a background job)
