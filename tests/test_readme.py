"""README.md must not drift from the code: law table, commands, set-up commands, noise models."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from bayescale import NOISE_MODELS, list_laws
from bayescale.cli import build_parser
from bayescale.cli.core import laws_markdown

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

DEMO_COMMAND = "python3.11 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/bayescale demo --out demo/"
TEST_COMMAND = ("python3.11 -m venv .venv && .venv/bin/pip install -e '.[test]' && "
                ".venv/bin/python -m pytest")


def _between(text: str, begin: str, end: str) -> str:
    match = re.search(re.escape(begin) + r"\n(.*?)\n" + re.escape(end), text, re.S)
    assert match, f"README.md has no {begin} ... {end} block"
    return match.group(1)


def test_law_table_matches_the_cards():
    table = _between(README, "<!-- laws:begin -->", "<!-- laws:end -->")
    assert table == laws_markdown(), (
        "README's law table is out of date: regenerate it with `bayescale laws --markdown`")
    names = re.findall(r"^\| `([a-z0-9_]+)` \|", table, re.M)
    assert names == list_laws()


def test_every_command_is_documented():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for command in sub.choices:
        assert f"`bayescale {command}" in README, (
            f"command {command!r} is not documented: add a row for it to the command table in README.md")


def test_setup_commands_are_the_ones_ci_runs():
    assert DEMO_COMMAND in README and TEST_COMMAND in README
    ci = (REPO / ".ci" / "run").read_text()
    assert "-m pytest" in ci and "pip install -e '.[test]'" in ci


def test_test_extra_has_what_ci_needs():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extra = " ".join(project["optional-dependencies"]["test"])
    for package in ("pytest", "build"):
        assert package in extra


def test_noise_models_are_documented():
    for name in NOISE_MODELS:
        assert f"`{name}`" in README
