"""bayescale.progress: the terminal bar (ETA, redrawn in place) and the plain lines elsewhere."""

from __future__ import annotations

import io
import re

from bayescale.progress import Bar, Steps, is_terminal


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_report_start_progress_and_end():
    out = io.StringIO()
    bar = Bar("kaplan, NUTS 4 chains", 2000, stream=out, every=0.0)      # every update is due for a line
    assert not bar.interactive
    bar.note("compiling the sampler")
    for done in (500, 1000, 2000):
        bar.update(done)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "kaplan, NUTS 4 chains: compiling the sampler"
    assert re.fullmatch(r"kaplan, NUTS 4 chains: 500/2000 iterations \(25%\), \d+\.\d s, ETA \d+\.\d s", lines[1])
    assert re.fullmatch(r"kaplan, NUTS 4 chains: 2000/2000 iterations in \d+\.\d s", lines[-1])


def test_plain_lines_are_few_for_a_short_loop():
    out = io.StringIO()
    bar = Bar("x", 100, stream=out)                                     # the default: a line every 10 s at most
    for done in range(10, 101, 10):
        bar.update(done)
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[-1]]
    assert out.getvalue().startswith("x: 100/100 iterations in ")


def test_terminal_bar_redraws_one_line_with_an_eta():
    out = Terminal()
    bar = Bar("fit", 10, stream=out)
    assert bar.interactive and is_terminal(out) and not is_terminal(io.StringIO())
    bar.note("compiling the sampler (once per law and data size)")
    bar.update(5)
    bar.update(10)
    frames = out.getvalue().split("\r")[1:]
    assert frames[0].startswith("fit: compiling")
    assert re.match(r"fit \[#{15} {15}\] 5/10, \d+\.\d s, ETA \d+\.\d s", frames[1])
    assert len(frames[1]) >= len(frames[0])              # the bar covers the note
    assert frames[2].startswith("fit [" + "#" * 30 + "] 10/10") and frames[2].endswith("\n")
    assert "ETA" not in frames[2]


def test_steps_lines():
    out = io.StringIO()
    Steps("memo", stream=out)("fitting kaplan")
    Steps("memo", enabled=False, stream=out)("not shown")
    assert re.fullmatch(r"\[memo +\d+\.\d s\] fitting kaplan\n", out.getvalue())
