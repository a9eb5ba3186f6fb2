"""Progress on stderr, the same everywhere: a bar with an ETA on a terminal, plain log lines otherwise.

Two kinds of report:

* :class:`Bar` for one long loop of known length (the sampler's iterations):
  on a terminal one line redrawn in place,
  ``chinchilla, NUTS 4 chains [#########       ] 900/2000, 0.4 s, ETA 0.5 s``;
  elsewhere (a pipe, a log file, a notebook) whole lines: one when the work
  starts, one at most every ``every`` seconds while it runs, one when it ends,
  so that a script's log shows that something is happening and what it cost.
* :class:`Steps` for a pipeline of named steps (the memo):
  ``[memo   12.3 s] fitting kaplan ...``, one line per step on any stream.

Both write to ``sys.stderr`` (looked up when they write, so redirecting it
works) and never to stdout, which ``--json`` keeps for its one JSON object.
"""

from __future__ import annotations

import sys
import time

__all__ = ["Bar", "Steps", "is_terminal"]


def is_terminal(stream=None) -> bool:
    """Whether ``stream`` (default: stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return False


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    minutes, s = divmod(int(round(s)), 60)
    return f"{minutes} min {s:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Bar:
    """Progress through ``total`` units of work (see the module docstring).

    ``note(text)`` says what happens before the counted work starts (e.g.
    compiling); ``update(done)`` reports ``done`` of ``total`` units; the
    clock of the ETA starts at the first ``update`` after a ``note`` (or at
    creation).  ``interactive``: force the terminal (True) or the line (False)
    style; default: whether the stream is a terminal.
    """

    def __init__(self, label: str, total: int, *, unit: str = "iterations", stream=None,
                 interactive: bool | None = None, every: float = 10.0, width: int = 30):
        self.label, self.total, self.unit = label, max(int(total), 1), unit
        self._stream = stream
        self.interactive = is_terminal(self.stream) if interactive is None else bool(interactive)
        self.every, self.width = every, width
        self._t0 = time.perf_counter()
        self._last_line = None      # when the last plain line was written
        self._shown = 0             # characters of the terminal line drawn so far

    @property
    def stream(self):
        return sys.stderr if self._stream is None else self._stream

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _line(self, text: str) -> None:
        if self.interactive:
            self._write("\r" + text.ljust(self._shown))
            self._shown = len(text)
        else:
            self._write(text + "\n")
            self._last_line = time.perf_counter()

    def note(self, text: str) -> None:
        """What is happening before the counted work (its time does not enter the ETA)."""
        self._line(f"{self.label}: {text}")
        self._t0 = None

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if self._t0 is None:
            self._t0 = now
        done = min(int(done), self.total)
        elapsed = now - self._t0
        finished = done >= self.total
        eta = elapsed * (self.total - done) / done if done else None
        timing = _seconds(elapsed) + ("" if finished or eta is None else f", ETA {_seconds(eta)}")
        if self.interactive:
            bar = "#" * int(self.width * done / self.total)
            self._line(f"{self.label} [{bar:<{self.width}}] {done}/{self.total}, {timing}")
            if finished:
                self._write("\n")
                self._shown = 0
        elif finished:
            self._line(f"{self.label}: {done}/{self.total} {self.unit} in {_seconds(elapsed)}")
        elif now - (self._last_line or self._t0) >= self.every:
            self._line(f"{self.label}: {done}/{self.total} {self.unit} ({100 * done / self.total:.0f}%), "
                       f"{timing}")


class Steps:
    """One line per step of a pipeline: ``[memo   12.3 s] message`` (elapsed time since creation)."""

    def __init__(self, prefix: str, enabled: bool = True, stream=None):
        self.prefix, self.enabled, self._stream = prefix, bool(enabled), stream
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.enabled:
            stream = sys.stderr if self._stream is None else self._stream
            print(f"[{self.prefix} {time.perf_counter() - self.t0:6.1f} s] {message}", file=stream, flush=True)
