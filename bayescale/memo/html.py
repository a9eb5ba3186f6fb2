"""Render a :class:`~bayescale.memo.model.Memo` as one self-contained HTML file.

Figures are embedded as base64 PNG ``data:`` URIs; the style sheet is inline;
there are no scripts and no external references, so the file opens with no
network and can be mailed as it is.
"""

from __future__ import annotations

import base64
import html
import re

from .layout import Banner, Bullets, Code, FigureRef, Heading, Para, Table, layout

__all__ = ["render_html"]

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1d1d1f;
       line-height: 1.5; margin: 0; background: #fafafa; }
main { max-width: 60rem; margin: 0 auto; padding: 1.5rem 2rem 4rem; background: #fff; }
h1 { font-size: 1.7rem; margin: 0.5rem 0 1rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
h3 { font-size: 1.08rem; margin-top: 1.6rem; }
nav { font-size: 0.9rem; margin-bottom: 1rem; color: #555; }
nav a { color: #1f5fa8; text-decoration: none; margin-right: 0.9rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.88rem; display: block; overflow-x: auto; }
th, td { border: 1px solid #d6d6d6; padding: 0.28rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f1f3f6; }
tr:nth-child(even) td { background: #fbfbfc; }
caption { caption-side: bottom; text-align: left; font-size: 0.82rem; color: #555; padding-top: 0.3rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.86em;
       background: #f3f3f3; padding: 0 0.2rem; border-radius: 3px; }
pre { background: #f3f3f3; padding: 0.7rem 0.9rem; overflow-x: auto; border-radius: 4px; }
pre code { background: none; padding: 0; }
figure { margin: 1.2rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e3e3; }
figcaption { font-size: 0.85rem; color: #444; }
.banner { padding: 0.8rem 1rem; border-radius: 4px; margin: 1rem 0; }
.banner.fail { background: #fdecea; border: 2px solid #c0392b; color: #7b1d12; font-weight: 600; }
.banner.warn { background: #fff4e5; border: 1px solid #e0a040; }
.banner.note { background: #eef4fb; border: 1px solid #9ec3ea; }
"""


def _inline(text: str) -> str:
    out = html.escape(str(text), quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return out


def _table(block: Table) -> str:
    parts = ["<table>"]
    if block.caption:
        parts.append(f"<caption>{_inline(block.caption)}</caption>")
    if any(h for h in block.header):
        parts.append("<thead><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in block.header) + "</tr></thead>")
    parts.append("<tbody>")
    for row in block.rows:
        cells = [f"<th>{_inline(row[0])}</th>" if not any(block.header) else f"<td>{_inline(row[0])}</td>"]
        cells += [f"<td>{_inline(c)}</td>" for c in row[1:]]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _figure(fig) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (f'<figure id="fig-{html.escape(fig.name)}"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(fig.title)}"><figcaption><strong>{_inline(fig.title)}.</strong> '
            f"{_inline(fig.caption)}</figcaption></figure>")


def render_html(memo) -> str:
    """The memo as a self-contained HTML document (a string)."""
    blocks = layout(memo)
    body, nav = [], []
    for block in blocks:
        if isinstance(block, Heading):
            anchor = f' id="{block.anchor}"' if block.anchor else ""
            body.append(f"<h{block.level}{anchor}>{_inline(block.text)}</h{block.level}>")
            if block.level == 2 and block.anchor:
                nav.append(f'<a href="#{block.anchor}">{_inline(block.text)}</a>')
        elif isinstance(block, Para):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Banner):
            role = ' role="alert"' if block.kind in ("fail", "warn") else ""
            body.append(f'<div class="banner {block.kind}"{role}>{_inline(block.text)}</div>')
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            body.append(_table(block))
        elif isinstance(block, Code):
            body.append(f"<pre><code>{html.escape(block.text, quote=False)}</code></pre>")
        elif isinstance(block, FigureRef):
            body.append(_figure(block.figure))
    # the navigation goes right after the title
    head = body[:1]
    rest = body[1:]
    title = html.escape(memo.title)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(head) + "\n<nav>" + " ".join(nav) + "</nav>\n" + "\n".join(rest)
            + "\n</main>\n</body>\n</html>\n")
