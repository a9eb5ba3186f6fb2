"""The command line: laws, show, fit, summary, demo; --json output; errors exit 2 in one line.

Commands run in-process through ``bayescale.cli.main`` (fast); one test runs
the installed console script in a subprocess.  Fits use 2 chains and few
draws: these tests check the plumbing, not the statistics.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayescale import list_laws
from bayescale.cli import COMMAND_MODULES, main
from bayescale.cli._common import parse_prior_options, short_citation
from bayescale.errors import PriorError

SMALL = ["--chains", "2", "--warmup", "300", "--draws", "300", "--seed", "1", "--no-progress"]
FORMULA = ["--formula", "E + A / N**alpha", "--prior", "E=LogNormal(0, 1)",
           "--prior", "A=LogNormal(5, 3)", "--prior", "alpha=Uniform(0.05, 1)"]


def run(*argv):
    """``main(argv)`` -> (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_json(stdout: str) -> dict:
    """stdout must be exactly one JSON object on one line."""
    assert stdout.endswith("\n") and stdout.count("\n") == 1, stdout[:500]
    obj = json.loads(stdout)
    assert isinstance(obj, dict)
    return obj


def assert_one_line_error(code, out, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def chinchilla_csv(path: Path, n: int = 30, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(1e7), np.log(1e9), n))
    D = np.exp(rng.uniform(np.log(1e9), np.log(1e11), n))
    loss = (1.8 + 482.0 / N**0.35 + 2085.0 / D**0.37) * np.exp(0.01 * rng.standard_t(4, n))
    pd.DataFrame({"N": N, "D": D, "loss": loss}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One chinchilla fit through the CLI, saved with --out (shared by several tests)."""
    tmp = tmp_path_factory.mktemp("cli_fit")
    csv = chinchilla_csv(tmp / "runs.csv")
    out = tmp / "fit.nc"
    code, stdout, stderr = run("fit", csv, "--law", "chinchilla", *SMALL, "--out", out, "--json")
    assert code == 0, stderr
    return {"csv": csv, "out": out, "report": one_json(stdout), "stderr": stderr}


# --------------------------------------------------------------------------- laws, show


def test_registered_modules_have_register():
    assert "core" in COMMAND_MODULES and "demo" in COMMAND_MODULES


def test_laws_text_lists_every_card():
    code, out, err = run("laws")
    assert code == 0 and err == ""
    for name in list_laws():
        assert name in out
    assert "E + A / N**alpha + B / D**beta" in out
    assert "Hoffmann et al. 2022" in out


def test_laws_json():
    code, out, _ = run("laws", "--json")
    assert code == 0
    laws = one_json(out)["laws"]
    assert [law["name"] for law in laws] == list_laws()
    for law in laws:
        assert law["formula"] and law["inputs"] and law["citation"]
        assert all(p["prior"] for p in law["params"])


def test_show_text_and_json():
    code, out, _ = run("show", "chinchilla")
    assert code == 0
    for fragment in ("E + A / N**alpha + B / D**beta", "LogNormal(0, 1) on L_c / loss_ref", "Beta(1.5, 1.5)",
                     "A = (1 - f_E) * g_N * L_c * N_ref**alpha", "natural parameters",
                     "student_t_log", "HalfNormal(0.1)", "C = 6 * N * D", "Hoffmann", "D = C / (6 * N)"):
        assert fragment in out, fragment
    code, out, _ = run("show", "chinchilla", "--json")
    info = one_json(out)
    assert info["name"] == "chinchilla" and info["noise"] == "student_t_log"
    assert {p["name"]: p["role"] for p in info["params"]}["alpha"] == "exponent"
    assert info["cost"] == "C = 6 * N * D"


def test_show_card_file(tmp_path):
    card = tmp_path / "mine.toml"
    card.write_text('name = "mine"\nformula = "E + A * x**(-alpha)"\n'
                    '[inputs.x]\nmeaning = "scale"\n'
                    '[params.E]\nprior = "LogNormal(0, 1)"\n[params.A]\nprior = "LogNormal(0, 2)"\n'
                    '[params.alpha]\nprior = "Uniform(0, 1)"\n')
    code, out, _ = run("show", "--card", card, "--json")
    info = one_json(out)
    assert info["name"] == "mine" and info["source"] == str(card)
    assert [p["name"] for p in info["params"]] == ["E", "A", "alpha"]


def test_unknown_law_is_one_line_error_exit_2():
    code, out, err = run("show", "no_such_law")
    assert_one_line_error(code, out, err, "unknown law 'no_such_law'", "chinchilla")
    assert out == ""
    code, out, err = run("show", "no_such_law", "--json")
    assert_one_line_error(code, out, err, "no_such_law")
    assert one_json(out)["error"]["type"] == "CardError"


# --------------------------------------------------------------------------- fit, summary


def test_fit_json_report(fitted):
    report = fitted["report"]
    assert report["law"] == "chinchilla" and report["noise"] == "student_t_log" and report["runs"] == 30
    # the natural parameters and the sampled coordinates they are derived from
    assert set(report["params"]) == {"E", "A", "B", "alpha", "beta", "L_c", "f_E", "g_N", "sigma"}
    for stats in report["params"].values():
        assert set(stats) == {"mean", "sd", "median", "q5", "q95", "r_hat", "ess_bulk", "ess_tail"}
        assert stats["q5"] <= stats["median"] <= stats["q95"]
    assert 0.2 < report["params"]["alpha"]["median"] < 0.5
    assert isinstance(report["divergences"], int)
    assert set(report["diagnostics"]) >= {"passed", "r_hat_max", "ess_bulk_min", "problems"}
    assert report["wall_s"] > 0 and report["timings"]["total_s"] > 0
    assert report["settings"]["chains"] == 2 and report["out"] == str(fitted["out"])
    # warnings, if any (a 300-draw fit may fail the gate), are one-line 'warning:' messages
    for line in fitted["stderr"].strip().splitlines():
        assert line.startswith("warning: ")


def test_summary_reads_the_saved_fit(fitted):
    code, out, _ = run("summary", fitted["out"], "--json")
    assert code == 0
    report = one_json(out)
    assert report["law"] == "chinchilla" and report["runs"] == 30
    for name, stats in fitted["report"]["params"].items():
        assert report["params"][name]["median"] == pytest.approx(stats["median"], rel=1e-6)
    code, out, _ = run("summary", fitted["out"])
    assert code == 0 and "diagnostics:" in out and "90% central posterior interval" in out


def test_out_is_not_overwritten_without_force(fitted):
    before = fitted["out"].stat().st_mtime_ns
    code, out, err = run("fit", fitted["csv"], "--law", "chinchilla", *SMALL, "--out", fitted["out"])
    assert_one_line_error(code, out, err, "exists", "--force")
    assert fitted["out"].stat().st_mtime_ns == before


def test_out_directory_must_exist(tmp_path):
    code, out, err = run("fit", chinchilla_csv(tmp_path / "r.csv"), "--law", "chinchilla",
                         "--out", tmp_path / "missing" / "fit.nc")
    assert_one_line_error(code, out, err, "does not exist")


def test_bad_input_names_the_column(tmp_path):
    csv = tmp_path / "bad.csv"
    frame = pd.read_csv(chinchilla_csv(tmp_path / "r.csv"))
    frame.loc[3, "N"] = 0.0
    frame.to_csv(csv, index=False)
    code, out, err = run("fit", csv, "--law", "chinchilla", *SMALL)
    assert_one_line_error(code, out, err, "column 'N'", "non-positive", "row 3")
    code, out, err = run("fit", tmp_path / "nope.csv", "--law", "chinchilla", "--json")
    assert_one_line_error(code, out, err, "nope.csv", "does not exist")
    assert one_json(out)["error"]["type"] == "DataError"


def test_fit_formula_with_priors_and_map(tmp_path):
    rng = np.random.default_rng(3)
    N = np.geomspace(1e7, 1e9, 16)
    loss = (1.8 + 300.0 / N**0.3) * np.exp(0.01 * rng.standard_t(4, N.size))
    frame = pd.DataFrame({"params": N, "val_loss": loss})
    frame = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)  # a duplicated run -> DataWarning
    csv = tmp_path / "one.csv"
    frame.to_csv(csv, index=False)
    code, out, err = run("fit", csv, *FORMULA, "--map", "N=params", "loss=val_loss", *SMALL, "--json")
    assert code == 0, err
    report = one_json(out)
    assert report["law"] == "custom" and report["formula"] == "E + A / N**alpha"
    assert set(report["params"]) == {"E", "A", "alpha", "sigma"}
    assert report["runs"] == 17
    assert any(line.startswith("warning: ") and "duplicated" in line for line in err.splitlines())
    assert all(line.startswith("warning: ") for line in err.strip().splitlines())


@pytest.mark.parametrize("entry, fragment", [
    ("alpha", "name=Family(args)"),
    ("=Uniform(0, 1)", "name=Family(args)"),
    ("2x=Uniform(0, 1)", "not a parameter name"),
])
def test_bad_prior_entries(tmp_path, entry, fragment):
    code, out, err = run("fit", tmp_path / "r.csv", "--formula", "E + A / N**alpha", "--prior", entry)
    assert_one_line_error(code, out, err, fragment)


def test_prior_family_errors_come_from_the_parser(tmp_path):
    code, out, err = run("fit", chinchilla_csv(tmp_path / "r.csv"), "--formula", "E + A / N**alpha",
                         "--prior", "E=LogNormal(0, 1)", "--prior", "A=Lognormal(5, 3)",
                         "--prior", "alpha=Uniform(0.05, 1)")
    assert_one_line_error(code, out, err, "unknown family 'Lognormal'", "LogNormal(loc, scale)")


def test_parse_prior_options():
    assert parse_prior_options(["alpha=Uniform(0.05, 1)", " E = LogNormal(0, 1) "]) == {
        "alpha": "Uniform(0.05, 1)", "E": "LogNormal(0, 1)"}
    with pytest.raises(PriorError, match="given twice"):
        parse_prior_options(["a=Normal(0, 1)", "a=Normal(0, 2)"])


def test_short_citation():
    assert short_citation("J. Hoffmann, S. Borgeaud, A. Mensch, Training Compute-Optimal Large Language "
                          "Models, arXiv:2203.15556 (NeurIPS 2022)", arxiv=True) == \
        "Hoffmann et al. 2022, arXiv:2203.15556"
    assert short_citation("D. Owen, How predictable is it?, arXiv:2401.04757 (2024)") == "Owen 2024"


def test_usage_error_exits_2_in_one_line():
    code, out, err = run("fit")
    assert_one_line_error(code, out, err, "bayescale fit", "the following arguments are required", "runs",
                          "bayescale fit --help")
    assert out == ""


@pytest.mark.parametrize("argv, fragment", [
    (["fit", "--json"], "the following arguments are required"),
    (["fit", "runs.csv", "--law", "chinchilla", "--chains", "four", "--json"], "invalid int value: 'four'"),
    (["fit", "runs.csv", "--law", "chinchilla", "--no-such-option", "--json"], "unrecognized arguments"),
    (["--json", "predict"], "required"),
    (["plot", "a.nc", "--kind", "pie", "--out", "x.png", "--json"], "invalid choice: 'pie'"),
    (["nonsense", "--json"], "invalid choice: 'nonsense'"),
])
def test_usage_errors_with_json_print_one_json_error(argv, fragment):
    """With --json anywhere, an argument error is one JSON object on stdout too (scripts parse stdout)."""
    code, out, err = run(*argv)
    assert_one_line_error(code, out, err, fragment)
    error = one_json(out)["error"]
    assert error["type"] == "UsageError" and fragment in error["message"]


def _subparsers():
    import argparse

    from bayescale.cli import build_parser

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield prefix + [name], sub
                    yield from walk(sub, prefix + [name])

    return list(walk(build_parser(), []))


def test_every_command_has_a_description_and_every_option_a_help():
    import argparse

    commands = _subparsers()
    assert {" ".join(c) for c, _ in commands} >= {"fit", "predict", "optimal", "plot", "compare", "backtest",
                                                   "memo", "demo", "summary"}
    for command, parser in commands:
        name = " ".join(command)
        assert parser.description, f"{name} has no description"
        text = parser.format_help()
        assert "%%" not in text and "%(" not in text, name     # no literal '50%%' in the help
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
    helps = {" ".join(c): " ".join(p.format_help().split()) for c, p in commands}
    assert "50% and 90% intervals" in helps["predict"]
    assert "50% and 90% predictive intervals" in helps["backtest"]


# --------------------------------------------------------------------------- failed fits: warnings, --strict


@pytest.fixture(scope="module")
def failed(tmp_path_factory):
    """A fit that fails the gate for sure: 2 chains x 100 draws cannot give an ESS of 400."""
    tmp = tmp_path_factory.mktemp("cli_failed")
    csv = chinchilla_csv(tmp / "runs.csv")
    out = tmp / "failed.nc"
    code, stdout, err = run("fit", csv, "--law", "chinchilla", "--chains", "2", "--warmup", "100", "--draws",
                            "100", "--no-progress", "--out", out, "--json")
    assert code == 0, err                       # without --strict a failed gate is a warning
    assert "warning: fit of 'chinchilla' failed the diagnostics gate" in err
    assert one_json(stdout)["diagnostics"]["passed"] is False
    return {"csv": csv, "out": out}


def test_strict_fit_exits_3_after_writing_its_output(failed, tmp_path):
    out = tmp_path / "again.nc"
    code, stdout, err = run("fit", failed["csv"], "--law", "chinchilla", "--chains", "2", "--warmup", "100",
                            "--draws", "100", "--no-progress", "--out", out, "--json", "--strict")
    assert code == 3
    assert one_json(stdout)["diagnostics"]["passed"] is False and out.is_file()
    code, stdout, err = run("summary", failed["out"], "--strict")
    assert code == 3 and "diagnostics: FAIL" in stdout


def test_strict_passes_a_good_fit(fitted):
    passed = fitted["report"]["diagnostics"]["passed"]
    code, _, _ = run("summary", fitted["out"], "--strict")
    assert code == (0 if passed else 3)


@pytest.mark.parametrize("argv", [
    ["predict", "{fit}", "--at", "N=7e10,D=1.4e12"],
    ["optimal", "{fit}", "--budget", "5.88e23"],
    ["plot", "{fit}", "--kind", "ratio", "--budget", "5.88e23", "--out", "{tmp}/ratio.png"],
    ["compare", "{fit}", "{fit}", "--names", "a,b"],
])
def test_reading_a_failed_fit_warns_and_strict_exits_3(failed, tmp_path, argv):
    args = [a.format(fit=failed["out"], tmp=tmp_path) for a in argv]
    code, stdout, err = run(*args)
    assert code == 0, err
    assert "warning: the fit of 'chinchilla' (student_t_log noise) used here failed the diagnostics gate" in err
    assert err.count("used here failed the diagnostics gate") == len(set(args) & {str(failed["out"])})
    (tmp_path / "ratio.png").unlink(missing_ok=True)
    code, stdout, err = run(*args, "--strict", "--json")
    assert code == 3
    one_json(stdout)                            # the output is still written, then the status says it failed


def test_fit_progress_is_plain_lines_when_not_a_terminal(tmp_path):
    """The default progress of `fit` in a script: whole lines on stderr (no carriage returns), stdout clean."""
    csv = chinchilla_csv(tmp_path / "runs.csv")
    code, stdout, err = run("fit", csv, "--law", "chinchilla", "--chains", "2", "--warmup", "300", "--draws",
                            "300", "--no-retry", "--json")
    assert code == 0
    one_json(stdout)
    assert "\r" not in err
    progress = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert progress[0] == "chinchilla, NUTS 2 chains: compiling the sampler (once per law and data size)"
    assert progress[-1].startswith("chinchilla, NUTS 2 chains: 600/600 iterations in ")


# --------------------------------------------------------------------------- console script


# the demo (now the whole pipeline, ending in a memo) is tested in test_memo.py


def _console_script() -> str:
    exe = Path(sys.executable).with_name("bayescale")
    found = str(exe) if exe.exists() else shutil.which("bayescale")
    if not found:
        pytest.skip("the bayescale console script is not installed")
    return found


def test_console_script(tmp_path):
    exe = _console_script()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([exe, "laws", "--json"], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [law["name"] for law in json.loads(done.stdout)["laws"]] == list_laws()
    done = subprocess.run([exe, "fit", "missing.csv", "--law", "chinchilla"], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "error: runs file 'missing.csv' does not exist"
