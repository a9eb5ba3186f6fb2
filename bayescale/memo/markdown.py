"""Render a :class:`~bayescale.memo.model.Memo` as Markdown (figures referenced as ``<name>.png``)."""

from __future__ import annotations

from .layout import Banner, Bullets, Code, FigureRef, Heading, Para, Table, layout

__all__ = ["render_markdown"]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(block: Table) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in block.header) + " |",
             "|" + "|".join("---" for _ in block.header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
    if block.caption:
        lines += ["", f"*{block.caption}*"]
    return lines


def render_markdown(memo) -> str:
    """The memo as one Markdown document."""
    out: list[str] = []
    for block in layout(memo):
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text]
        elif isinstance(block, Para):
            out += [block.text]
        elif isinstance(block, Banner):
            if block.kind in ("fail", "warn"):
                out += [f"> **{block.text}**"]
            else:
                out += [f"> {block.text}"]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items]
        elif isinstance(block, Table):
            out += _table(block)
        elif isinstance(block, Code):
            out += ["```", block.text, "```"]
        elif isinstance(block, FigureRef):
            f = block.figure
            out += [f"![{f.title}]({f.name}.png)", "", f"*{f.title}.* {f.caption}"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
