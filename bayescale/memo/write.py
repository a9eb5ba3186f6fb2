"""Write a memo to a directory: memo.md, memo.html, memo.json, <figure>.png, fits/*.nc."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import FitFileError
from .html import render_html
from .markdown import render_markdown

__all__ = ["check_out_dir", "write_memo"]


def check_out_dir(out, force: bool = False) -> Path:
    """Fail fast (before any fitting) unless ``out`` is a new or empty directory (or ``force``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FitFileError(f"--out {str(out)!r} is a file; the memo needs a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FitFileError(f"--out directory {str(out)!r} is not empty; pass --force (force=True) to write into "
                           "it (memo.md, memo.html, memo.json, the figures and fits/ are overwritten) or choose "
                           "another directory")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise FitFileError(f"--out {str(out)!r}: directory {str(parent)!r} does not exist")
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "fit"


def write_memo(memo, out, force: bool = False, save_fits: bool = True) -> dict:
    """Render ``memo`` into directory ``out``; returns the paths written (by kind)."""
    out = check_out_dir(out, force)
    out.mkdir(exist_ok=True)
    paths = {"markdown": out / "memo.md", "html": out / "memo.html", "json": out / "memo.json",
             "figures": [], "fits": []}
    for fig in memo.figures:
        path = out / f"{fig.name}.png"
        path.write_bytes(fig.png)
        paths["figures"].append(path)
    paths["markdown"].write_text(render_markdown(memo), encoding="utf-8")
    paths["html"].write_text(render_html(memo), encoding="utf-8")
    paths["json"].write_text(json.dumps(memo.as_dict(), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    if save_fits and (memo.fits or memo.holdout_fits):
        fits_dir = out / "fits"
        fits_dir.mkdir(exist_ok=True)
        names = [c.name for c in memo.diagnostics.checks if c.role != "backtest"]
        taken = set()
        for name, fit in list(zip(names, memo.fits)) + [(f"backtest_{n}", f) for n, f in memo.holdout_fits]:
            stem = _safe(name)
            while stem in taken:
                stem += "_"
            taken.add(stem)
            paths["fits"].append(fit.save(fits_dir / f"{stem}.nc", force=True))
    return paths
