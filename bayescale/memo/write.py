"""Write a memo to a directory, atomically: memo.md, memo.html, memo.json, <figure>.png, fits/*.nc.

Everything is written into a hidden sibling folder
(``.<name>.partial-<pid>-<random>`` beside ``out``) and renamed into place at
the end, so a process killed at any moment leaves either nothing or a
complete memo at ``out`` (and at worst a partial folder, which the next
write removes once its process is gone).  An existing memo is replaced by
exchanging the two folders in one step (Linux ``renameat2(RENAME_EXCHANGE)``;
elsewhere two renames, between which ``out`` is briefly missing but the old
memo is kept aside until the new one is in place).

``force`` replaces an existing ``out`` only if everything in it is a memo's
(its files, figures and ``fits/``): a folder holding anything else is never
deleted, with or without ``force``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..errors import FitFileError
from .html import render_html
from .markdown import render_markdown

__all__ = ["check_out_dir", "write_memo"]

_MEMO_FILES = re.compile(r"^(memo\.(md|html|json)|[A-Za-z0-9_.-]+\.png)$")


def _foreign(out: Path) -> list[str]:
    """Entries of ``out`` that a memo does not write (a memo's own files, figures and fits/*.nc are fine)."""
    bad = []
    for entry in out.iterdir():
        if entry.is_dir() and not entry.is_symlink() and entry.name == "fits":
            bad += [f"fits/{e.name}" for e in entry.iterdir() if not (e.is_file() and e.suffix == ".nc")]
        elif not (entry.is_file() and not entry.is_symlink() and _MEMO_FILES.match(entry.name)):
            bad.append(entry.name)
    return sorted(bad)


def check_out_dir(out, force: bool = False) -> Path:
    """Fail fast (before any fitting) unless ``out`` is a new or empty directory, or (with ``force``) a
    previous memo's."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FitFileError(f"memo folder (out, --out) {str(out)!r} is a file; the memo needs a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise FitFileError(f"memo folder (out, --out) {str(out)!r} is not empty; pass force=True (command "
                               "line --force) to replace the memo in it, or choose another directory")
        foreign = _foreign(out)
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise FitFileError(f"memo folder (out, --out) {str(out)!r} holds files that are not a memo's "
                               f"({shown}); force only replaces a previous memo, so choose another directory")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise FitFileError(f"memo folder (out, --out) {str(out)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FitFileError(f"memo folder (out, --out) {str(out)!r}: directory {str(parent)!r} is not writable")
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "fit"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale(out: Path) -> None:
    """Delete partial folders left beside ``out`` by writers that were killed."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(partial|old)-(\d+)-")
    for entry in out.parent.iterdir():
        m = pattern.match(entry.name)
        if m and entry.is_dir() and not entry.is_symlink() and not _alive(int(m.group(2))):
            shutil.rmtree(entry, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 with RENAME_EXCHANGE); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _write_files(memo, folder: Path, save_fits: bool) -> dict:
    paths = {"markdown": folder / "memo.md", "html": folder / "memo.html", "json": folder / "memo.json",
             "figures": [], "fits": []}
    for fig in memo.figures:
        path = folder / f"{fig.name}.png"
        path.write_bytes(fig.png)
        paths["figures"].append(path)
    paths["json"].write_text(json.dumps(memo.as_dict(), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    if save_fits and (memo.fits or memo.holdout_fits):
        fits_dir = folder / "fits"
        fits_dir.mkdir()
        names = [c.name for c in memo.diagnostics.checks if c.role != "backtest"]
        taken = set()
        for name, fit in list(zip(names, memo.fits)) + [(f"backtest_{n}", f) for n, f in memo.holdout_fits]:
            stem = _safe(name)
            while stem in taken:
                stem += "_"
            taken.add(stem)
            paths["fits"].append(fit.save(fits_dir / f"{stem}.nc", force=True))
    paths["markdown"].write_text(render_markdown(memo), encoding="utf-8")
    paths["html"].write_text(render_html(memo), encoding="utf-8")   # last: its presence means complete
    return paths


def write_memo(memo, out, force: bool = False, save_fits: bool = True) -> dict:
    """Render ``memo`` into directory ``out``, atomically (see the module docstring); returns the paths
    written (by kind), as they are at ``out``."""
    out = check_out_dir(out, force)
    _remove_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    try:
        written = _write_files(memo, tmp, save_fits)
        os.chmod(tmp, 0o777 & ~_umask())
        if out.is_dir() and any(out.iterdir()):
            check_out_dir(out, force)                 # still a memo's folder: replace it
            if _exchange(tmp, out):
                shutil.rmtree(tmp, ignore_errors=True)    # tmp now holds the old memo
            else:
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
                os.rename(out, old / "memo")
                os.rename(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)                      # onto nothing, or onto an empty folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    def moved(p):
        return out / p.relative_to(tmp)

    return {k: ([moved(p) for p in v] if isinstance(v, list) else moved(v)) for k, v in written.items()}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
