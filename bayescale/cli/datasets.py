"""``bayescale datasets``: list, download (explicitly) and locate public datasets.

::

    bayescale datasets list [--json]
    bayescale datasets fetch chinchilla_epoch [--cache-dir DIR] [--force]
    bayescale datasets path chinchilla_epoch [--cache-dir DIR]

Only ``fetch`` uses the network; see :mod:`bayescale.datasets`.
"""

from __future__ import annotations

from ._common import add_json, emit

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "datasets", help="public datasets: list them, download one into the cache (fetch), locate it (path)",
        description="Public scaling-law datasets, downloaded from their original (commit-pinned) location only "
                    "by `fetch`, verified by SHA-256 and cached in --cache-dir, $BAYESCALE_DATA_DIR or "
                    "~/.cache/bayescale/datasets. Python: bayescale.datasets.load(name).")
    sub = p.add_subparsers(dest="action", metavar="<action>")
    sub.required = True
    q = sub.add_parser("list", help="the datasets, their source and whether they are cached",
                       description="The public datasets bayescale knows: name, source, licence and whether a "
                                   "verified copy is in the cache (no network).")
    q.add_argument("--cache-dir", metavar="DIR", help="cache directory")
    add_json(q)
    q.set_defaults(func=run_list)
    for action, text, about in (
            ("fetch", "download a dataset into the cache and verify it",
             "Download a dataset from its original, commit-pinned location into the cache and verify its "
             "SHA-256 (the only command that uses the network)."),
            ("path", "where a dataset's file is cached",
             "Print where a dataset's file is (or would be) cached; no network.")):
        q = sub.add_parser(action, help=text, description=about)
        q.add_argument("name", help="dataset name (see `bayescale datasets list`)")
        q.add_argument("--cache-dir", metavar="DIR", help="cache directory")
        if action == "fetch":
            q.add_argument("--force", action="store_true", help="download again even if a verified copy exists")
        add_json(q)
        q.set_defaults(func=run_fetch if action == "fetch" else run_path)


def run_list(args) -> int:
    from ..datasets import DATASETS, path

    rows = []
    for ds in DATASETS.values():
        where = path(ds.name, args.cache_dir)
        rows.append({"name": ds.name, "title": ds.title, "url": ds.url, "cached": where.is_file(),
                     "path": str(where), "citation": ds.citation, "license": ds.license})
    text = "\n".join(f"{r['name']}: {r['title']}\n  source: {r['url']}\n  "
                     f"{'cached at ' + r['path'] if r['cached'] else 'not cached (bayescale datasets fetch ' + r['name'] + ')'}"
                     for r in rows)
    emit(args, {"datasets": rows}, text)
    return 0


def run_fetch(args) -> int:
    from ..datasets import DATASETS, fetch

    where = fetch(args.name, args.cache_dir, force=args.force)
    emit(args, {"name": args.name, "path": str(where), "url": DATASETS[args.name].url, "verified": True},
         f"{args.name}: verified copy at {where}")
    return 0


def run_path(args) -> int:
    from ..datasets import path

    where = path(args.name, args.cache_dir)
    emit(args, {"name": args.name, "path": str(where), "cached": where.is_file()}, str(where))
    return 0
