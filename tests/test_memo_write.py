"""Writing a memo folder: atomic (kill -9 at any moment leaves nothing or a complete memo), force, safety.

The kill tests run ``write_memo`` in a subprocess on a pickled memo (the session's Epoch memo) with every
file write and rename reported on stdout and followed (or, for renames, preceded) by a short pause; the
test kills the process with SIGKILL right after the k-th report, i.e. at a known moment of the write.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap

import pytest

from bayescale import load_fit
from bayescale.errors import FitFileError
from bayescale.memo import write_memo

WRITER = textwrap.dedent("""
    import os, pickle, sys, time
    from pathlib import Path

    import bayescale.memo.write as w
    import bayescale.result as result

    def report(what):
        print(what, flush=True)
        time.sleep(0.2)                    # the test's SIGKILL lands in this pause

    def after(orig, label):
        def wrapped(self, *a, **k):
            out = orig(self, *a, **k)
            report(f"{label} {self.name}")
            return out
        return wrapped

    Path.write_bytes = after(Path.write_bytes, "wrote")
    Path.write_text = after(Path.write_text, "wrote")
    result.Fit.save = (lambda orig: lambda self, path, force=False: (
        orig(self, path, force=force), report(f"saved {Path(path).name}"))[0])(result.Fit.save)

    def before(orig, label):
        def wrapped(*a, **k):
            report(f"{label}")
            return orig(*a, **k)
        return wrapped

    w.os.replace = before(os.replace, "rename")
    w.os.rename = before(os.rename, "rename")
    w._exchange = before(w._exchange, "exchange")
    memo = pickle.loads(Path(sys.argv[1]).read_bytes())
    report("start")
    w.write_memo(memo, sys.argv[2], force=sys.argv[3] == "1")
    print("done", flush=True)
""")


@pytest.fixture(scope="module")
def pickled(epoch_memo, tmp_path_factory):
    path = tmp_path_factory.mktemp("memo_pickle") / "memo.pkl"
    path.write_bytes(pickle.dumps(epoch_memo))
    return path


@pytest.fixture(scope="module")
def events(epoch_memo, pickled, tmp_path_factory):
    """The reports of one whole write: the moments a kill can be aimed at (and the write is complete)."""
    out = tmp_path_factory.mktemp("probe") / "memo"
    lines = _events(pickled, out, False)
    assert lines[0] == "start" and lines[-1] == "rename"
    assert sum(e.startswith("wrote") for e in lines) >= 5 and any(e.startswith("saved") for e in lines)
    assert _complete(epoch_memo, out)
    return lines


def _complete(memo, out) -> bool:
    names = {"memo.md", "memo.html", "memo.json"} | {f"{f.name}.png" for f in memo.figures}
    if not out.is_dir() or not names <= {p.name for p in out.iterdir()}:
        return False
    for fig in memo.figures:
        if (out / f"{fig.name}.png").read_bytes() != fig.png:
            return False
    fits = sorted((out / "fits").iterdir())
    assert [p.name for p in fits] == ["chinchilla.nc"]
    assert len(load_fit(fits[0]).runs) == 240
    return (out / "memo.html").read_text().rstrip().endswith("</html>")


def _events(pickled, out, force: bool) -> list[str]:
    """A full write with the reports: the moments a kill can be aimed at."""
    done = subprocess.run([sys.executable, "-c", WRITER, str(pickled), str(out), "1" if force else "0"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[-1] == "done"
    return lines[:-1]


def _kill_after(pickled, out, force: bool, k: int) -> str:
    """Start a write, SIGKILL it right after its k-th report (0 = 'start'); return that report."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(pickled), str(out), "1" if force else "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = None
    try:
        for i, line in enumerate(proc.stdout):
            seen = line.strip()
            if i == k:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=120)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, (k, seen)
    return seen


def test_kill_9_leaves_nothing_or_a_complete_memo(epoch_memo, pickled, events, tmp_path):
    """New folder: killed at moments across the write (before anything, after the first figure, half-way,
    just before the rename), the final path is absent (the complete case is the ``events`` run), and a plain
    rerun (no --force) then succeeds and removes the dead writer's partial folder."""
    moments = sorted({0, 1, len(events) // 2, len(events) - 1})
    for k in moments:
        out = tmp_path / f"memo{k}"
        seen = _kill_after(pickled, out, False, k)
        assert seen == events[k]
        assert not out.exists(), (k, seen, sorted(p.name for p in out.iterdir()))   # killed before the rename
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(f".memo{k}.")]
        assert all(".partial-" in name for name in leftovers), leftovers
        write_memo(epoch_memo, out)                      # no --force needed: nothing is at out
        assert _complete(epoch_memo, out)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".memo{k}.")]   # stale partial removed


def test_kill_9_while_replacing_a_memo_keeps_the_old_or_the_new(epoch_memo, pickled, events, tmp_path):
    """--force over an existing memo: killed before the exchange, the old memo is still complete at out."""
    out = tmp_path / "memo"
    write_memo(epoch_memo, out)
    (out / "memo.md").write_text((out / "memo.md").read_text() + "\nOLD\n")
    k = len(events) - 1                                   # the last moment: just before the swap
    assert _kill_after(pickled, out, True, k) in ("exchange", "rename")
    assert _complete(epoch_memo, out) and (out / "memo.md").read_text().endswith("OLD\n")
    write_memo(epoch_memo, out, force=True)
    assert _complete(epoch_memo, out) and "OLD" not in (out / "memo.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memo"]        # nothing left beside it


def test_force_never_deletes_files_that_are_not_a_memos(epoch_memo, tmp_path):
    out = tmp_path / "memo"
    write_memo(epoch_memo, out, save_fits=False)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FitFileError, match="not a memo's.*notes.txt"):
        write_memo(epoch_memo, out, force=True)
    assert (out / "notes.txt").read_text() == "mine"
    home = tmp_path / "project"
    home.mkdir()
    (home / "runs.csv").write_text("N,D,loss\n")
    with pytest.raises(FitFileError, match="runs.csv"):
        write_memo(epoch_memo, home, force=True)
    assert (home / "runs.csv").exists()


def test_write_into_an_empty_folder_and_paths_point_at_the_result(epoch_memo, tmp_path):
    out = tmp_path / "memo"
    out.mkdir()
    paths = write_memo(epoch_memo, out, save_fits=False)
    assert paths["markdown"] == out / "memo.md" and paths["markdown"].is_file()
    assert all(p.parent == out and p.is_file() for p in paths["figures"])
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask         # like a folder made by mkdir, not mkdtemp's 0700
