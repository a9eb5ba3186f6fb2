"""Decision memos: the frozen Memo, its Markdown/HTML renderings, the files, the CLI, the demo.

The default tests reuse the session's Epoch fit (``epoch_memo`` in conftest:
no extra NUTS run); the CLI tests fit the shipped 40-run pilot study with
small settings.  The full acceptance runs (Epoch data with two laws and a
backtest; the full demo) are marked slow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import warnings

import numpy as np
import pytest

from bayescale import load_fit
from bayescale.cli import main
from bayescale.diagnostics import Diagnostics
from bayescale.errors import BayescaleError, FitFileError
from bayescale.memo import Memo, build_memo, render_html, render_markdown, write_memo
from bayescale.memo.fmt import g

PLAN = {"N": 7e10, "D": 1.4e12}
SECTIONS = ("## Summary", "## The question", "## The data", "## Laws compared", "## The answer",
            "## Sensitivity", "## Diagnostics", "## Posterior parameters", "## Reproducibility")


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _ordered(e) -> bool:
    return e.lower_90 <= e.lower_50 <= e.median <= e.upper_50 <= e.upper_90


# --------------------------------------------------------------------------- the Memo object (Epoch data)


def test_epoch_memo_allocation_matches_issue_3(epoch_memo):
    """D*/N* at 5.88e23 within 15..22 (issue 3's acceptance), with its 90% interval; exponent a 0.49..0.54."""
    alloc = epoch_memo.answer.allocation
    assert alloc.budget == 5.88e23
    assert 15 <= alloc.ratio.median <= 22
    assert _ordered(alloc.ratio) and alloc.ratio.lower_90 < alloc.ratio.upper_90
    assert 0.49 <= alloc.exponent_a.median <= 0.54
    assert np.isclose(alloc.N.median * alloc.D.median * 6, 5.88e23, rtol=0.1)
    assert _ordered(alloc.N) and _ordered(alloc.D)


def test_epoch_memo_flags_the_plan_with_its_regret(epoch_memo):
    a = epoch_memo.answer
    r = a.regret
    assert r is not None and np.isclose(r.compute, 6 * 7e10 * 1.4e12)
    assert r.regret_mean >= 0 and r.regret_upper_90 >= r.regret_median >= 0
    assert 0 < r.efficiency_median <= 1 and 0 <= r.p_within <= 1 + 1e-9
    assert a.plan_status in ("near-optimal", "off-optimal")
    assert f"{g(r.regret_mean, 2)}" in a.plan_verdict and "D/N = 20" in a.plan_verdict
    md = render_markdown(epoch_memo)
    assert "## The answer" in md and "### The plan against the optimum" in md
    assert a.plan_verdict in md


def test_epoch_memo_plan_prediction(epoch_memo):
    p = epoch_memo.answer.plan
    assert _ordered(p.loss) and _ordered(p.law_loss)
    # the predictive band contains the law band
    assert p.loss.lower_90 <= p.law_loss.lower_90 and p.law_loss.upper_90 <= p.loss.upper_90
    assert 1.8 < p.loss.median < 2.1
    assert 0 <= p.p_below_target <= 1
    assert np.isclose(p.compute, 5.88e23) and p.extrapolation > 1
    q = epoch_memo.question
    assert q.target == 1.95 and q.plan["N"] == 7e10 and q.utility == "mean"


def test_epoch_memo_data_and_reproducibility(epoch_memo, epoch_fit):
    d = epoch_memo.data
    assert d.n_runs == 240
    ranges = {r.column: r for r in d.ranges}
    assert set(ranges) >= {"N", "D", "C", "loss"}
    c_max = epoch_fit.runs.table["N"].to_numpy() * epoch_fit.runs.table["D"].to_numpy() * 6
    assert np.isclose(ranges["C"].max, c_max.max(), rtol=1e-6)
    assert np.isclose(ranges["C"].ratio_to_max, 5.88e23 / c_max.max(), rtol=1e-6)
    assert np.isclose(d.budget_extrapolation, 5.88e23 / c_max.max(), rtol=1e-6)
    rep = epoch_memo.reproducibility
    assert rep.cards == {"chinchilla": epoch_fit.card_hash}
    assert rep.runs_hash == epoch_fit.runs.hash and rep.seed == 0
    assert {"numpyro", "jax", "arviz", "matplotlib", "python"} <= set(rep.versions)
    assert rep.command.startswith("tests:")
    checks = epoch_memo.diagnostics.checks
    assert len(checks) == 1 and checks[0].status == "pass" and epoch_memo.diagnostics.banner is None
    sens = epoch_memo.sensitivity
    assert len(sens.rows) == 1 and "One fit only" in sens.summary[0]
    assert "only one fit" in epoch_memo.evidence.verdict


def test_memo_is_frozen_and_json_ready(epoch_memo):
    with pytest.raises(dataclasses.FrozenInstanceError):
        epoch_memo.title = "x"
    data = json.loads(json.dumps(epoch_memo.as_dict(), allow_nan=False))
    assert set(data) >= {"question", "data", "evidence", "answer", "sensitivity", "diagnostics",
                         "reproducibility", "figures"}
    assert data["answer"]["regret"]["N"] == 7e10
    assert "ratio" in data["answer"]["choice"]
    assert all("png" not in f for f in data["figures"])
    assert "Decision memo" in str(epoch_memo)


# --------------------------------------------------------------------------- rendering


def test_markdown_has_every_section(epoch_memo):
    md = render_markdown(epoch_memo)
    positions = [md.index(s) for s in SECTIONS]
    assert positions == sorted(positions)
    alloc = epoch_memo.answer.allocation
    assert g(alloc.ratio.median, 4) in md            # the numbers shown are the memo's
    assert "P(loss < 1.95) = **" in md
    assert "50% interval" in md and "90% interval" in md
    for fig in epoch_memo.figures:
        assert f"]({fig.name}.png)" in md
    assert {f.name for f in epoch_memo.figures} >= {"bands", "allocation", "ratio", "sensitivity"}
    assert "DIAGNOSTICS FAILED" not in md


def test_html_is_self_contained(epoch_memo):
    html = render_html(epoch_memo)
    assert html.startswith("<!DOCTYPE html>")
    srcs = re.findall(r'src="([^"]*)"', html)
    assert len(srcs) == len(epoch_memo.figures) and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "<script" not in html and "<link" not in html and "@import" not in html
    for heading in SECTIONS:
        assert f">{heading[3:]}</h2>" in html
    # text is escaped: nothing from the data can open a tag
    assert "<strong>" in html and "**" not in html


# --------------------------------------------------------------------------- files


def test_write_memo_files_and_force(epoch_memo, tmp_path):
    out = tmp_path / "memo"
    paths = write_memo(epoch_memo, out)
    for name in ("memo.md", "memo.html", "memo.json"):
        assert (out / name).stat().st_size > 0
    for fig in epoch_memo.figures:
        assert (out / f"{fig.name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in paths["fits"]] == ["chinchilla.nc"]
    back = load_fit(out / "fits" / "chinchilla.nc")
    assert back.law.name == "chinchilla" and len(back.runs) == 240
    assert json.loads((out / "memo.json").read_text())["question"]["budget"] == 5.88e23
    with pytest.raises(FitFileError, match="not empty"):
        write_memo(epoch_memo, out)
    write_memo(epoch_memo, out, force=True, save_fits=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FitFileError, match="is a file"):
        write_memo(epoch_memo, tmp_path / "file")


# --------------------------------------------------------------------------- failed diagnostics


def _failed(fit):
    d = fit.diagnostics
    bad = Diagnostics(r_hat={**d.r_hat, "alpha": 1.08}, ess_bulk={**d.ess_bulk, "alpha": 31.0},
                      ess_tail=d.ess_tail, divergences=12, draws=d.draws, saturated=0,
                      max_tree_depth=d.max_tree_depth,
                      problems=("R-hat above 1.01 for alpha (1.080)", f"12 divergent transitions out of {d.draws}"),
                      advice=("run longer (--warmup/--draws)", "raise --target-accept (e.g. 0.95)"))
    return dataclasses.replace(fit, diagnostics=bad)


def test_failed_fit_gives_the_failure_banner(epoch_fit):
    bad = _failed(epoch_fit)
    memo = build_memo(fits=[bad], budget=5.88e23, plan=PLAN, backtest=False, figures=False, progress=False)
    assert memo.failed and memo.diagnostics.status == "fail"
    check = memo.diagnostics.checks[0]
    assert check.status == "fail" and any("R-hat" in r for r in check.reasons)
    banner = memo.diagnostics.banner
    assert banner.startswith("DIAGNOSTICS FAILED for 1 of 1 fits") and "do not act on them" in banner
    assert memo.diagnostics.banner_kind == "fail" and memo.diagnostics.answer_failed
    assert memo.answer.decision.action == "rerun"
    assert memo.answer.decision.sentence.startswith("**Do not act on this memo yet**")
    md = render_markdown(memo)
    first_section = md.index("## Summary")
    assert md.index("> **DIAGNOSTICS FAILED") < first_section      # at the top, before anything else
    assert "Diagnostics: **FAIL** for the answer" in md
    assert "⛔" not in md                                          # no emoji: it renders as a box without a font
    html = render_html(memo)
    assert '<div class="banner fail" role="alert">DIAGNOSTICS FAILED' in html
    assert "DIAGNOSTICS FAILED" in str(memo)


@pytest.mark.slow  # 20 s; the banner itself is checked above on a fit marked as failed
def test_cli_memo_with_fits_that_fail_the_gate(tmp_path):
    """Real fits with far too few draws, one law under two noise models: the CLI still writes the memo,
    with the banner, compares the noise models and shows the answer under each; and it warns."""
    from bayescale.data import pilot_chinchilla

    csv = tmp_path / "runs.csv"
    pilot_chinchilla().to_csv(csv, index=False)
    out = tmp_path / "memo"
    code, stdout, err = run("memo", csv, "--laws", "chinchilla", "--noise", "student_t_log,normal_raw",
                            "--plan", "N=7e10,D=1.4e12", "--target", "2", "--out", out, "--chains", "1",
                            "--warmup", "20", "--draws", "20", "--no-backtest", "--json")
    assert code == 0, err
    report = json.loads(stdout)
    memo = report["memo"]
    assert memo["diagnostics"]["status"] == "fail"
    assert "warning: diagnostics FAILED for chinchilla/student_t_log" in err
    assert "[memo" in err and "fit 2 of 2: chinchilla (normal_raw noise)" in err        # progress on stderr
    names = ["chinchilla/student_t_log", "chinchilla/normal_raw"]
    assert sorted(s["name"] for s in memo["evidence"]["scores"]) == sorted(names)
    assert [r["name"] for r in memo["sensitivity"]["rows"]] == names
    assert all(r["plan_loss"] is not None and r["ratio"] is not None for r in memo["sensitivity"]["rows"])
    md = (out / "memo.md").read_text()
    assert md.index("DIAGNOSTICS FAILED") < md.index("## Summary")
    assert "effective sample size below 400" in md and "no backtest was asked for" in md
    assert "DIAGNOSTICS FAILED" in (out / "memo.html").read_text()
    assert memo["question"]["budget"] == pytest.approx(5.88e23)       # the plan's compute
    assert memo["question"]["noises"] == ["student_t_log", "normal_raw"]
    assert memo["reproducibility"]["command"].startswith("bayescale memo ")
    assert sorted(p.name for p in (out / "fits").iterdir()) == ["chinchilla_normal_raw.nc",
                                                                "chinchilla_student_t_log.nc"]


# --------------------------------------------------------------------------- CLI errors


def test_cli_memo_refuses_a_non_empty_out_dir(tmp_path):
    out = tmp_path / "memo"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, stdout, err = run("memo", tmp_path / "runs.csv", "--budget", "1e24", "--out", out)
    assert code == 2 and stdout == ""
    assert err.startswith("error: ") and "not empty" in err and "--force" in err and err.count("\n") == 1
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("argv, fragment", [
    (["runs.csv"], "--budget"),
    (["runs.csv", "--plan", "N=7e10,D"], "--plan"),
    (["a.nc", "runs.csv", "--budget", "1e24"], "not both"),
    (["a.nc", "b.nc", "--laws", "kaplan", "--budget", "1e24"], "--laws"),
    (["missing.csv", "--budget", "1e24"], "does not exist"),
    (["missing.csv", "--budget", "-1"], "budget"),
])
def test_cli_memo_bad_input(tmp_path, argv, fragment):
    code, stdout, err = run("memo", *argv, "--out", tmp_path / "m", "--no-progress")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert fragment in err


def test_build_memo_bad_arguments(epoch_fit):
    with pytest.raises(BayescaleError, match="utility"):
        build_memo(fits=[epoch_fit], budget=1e24, utility="median", progress=False)
    with pytest.raises(BayescaleError, match="plan"):
        build_memo(fits=[epoch_fit], plan={"N": -1, "D": 1e12}, progress=False)
    with pytest.raises(BayescaleError, match="runs"):
        build_memo(None, ["chinchilla"], budget=1e24, progress=False)


# --------------------------------------------------------------------------- the demo


@pytest.mark.slow  # 37 s cold; .ci/run also runs `demo --quick` from the installed wheel
def test_demo_quick_writes_the_whole_memo(tmp_path):
    out = tmp_path / "demo"
    code, stdout, err = run("demo", "--out", out, "--quick", "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["simulated"] is True and report["settings"]["chains"] == 2
    memo = report["memo"]
    assert [s["name"] for s in memo["evidence"]["scores"]] == ["chinchilla", "kaplan"]   # LOO prefers the truth
    assert len(memo["evidence"]["backtest"]) == 2
    assert {f["name"] for f in memo["figures"]} == {"bands", "allocation", "ratio", "compare", "backtest",
                                                   "loo_pit", "sensitivity"}
    md = (out / "memo.md").read_text()
    for s in SECTIONS:
        assert s in md, s
    assert "SIMULATED, not measured" in md and "generating value" in md and "482" in md
    assert (out / "memo.html").read_text().count("data:image/png;base64,") == 7
    summary = md[md.index("## Summary"):md.index("## The question")]
    assert "70B parameters on 1.4T tokens" in summary.splitlines()[2]        # the decision sentence opens it
    assert "in the backtest, chinchilla's calibrated 90% intervals covered" in summary
    assert sorted(p.name for p in (out / "fits").iterdir()) == [
        "backtest_chinchilla.nc", "backtest_kaplan.nc", "chinchilla.nc", "kaplan.nc"]
    # the truth (Epoch's parameters) inside the 90% intervals of the exponents and E
    params = {(p["fit"], p["param"]): p for p in memo["evidence"]["params"]}
    for name in ("E", "alpha", "beta"):
        p = params[("chinchilla", name)]
        assert p["lower_90"] <= p["truth"] <= p["upper_90"], name
    for step in ("fit 1 of 2: chinchilla", "fit 2 of 2: kaplan", "backtest 2 of 2", "figure 1 of 7: "):
        assert step in err
    code, stdout, err = run("demo", "--out", out, "--quick")
    assert code == 2 and "not empty" in err and "--force" in err


# --------------------------------------------------------------------------- slow acceptance


@pytest.mark.slow
def test_demo_full_passes_every_diagnostic(tmp_path):
    """The README's main job: the full demo, with no failed (or warned) diagnostics on the default data."""
    import time

    t0 = time.perf_counter()
    code, stdout, err = run("demo", "--out", tmp_path / "demo", "--json", "--no-progress")
    wall = time.perf_counter() - t0
    assert code == 0, err
    memo = json.loads(stdout)["memo"]
    statuses = {c["name"] + "/" + c["role"]: c["status"] for c in memo["diagnostics"]["checks"]}
    assert set(statuses.values()) == {"pass"}, statuses
    assert len(statuses) == 4
    truth = {r["quantity"]: r for r in memo["data"]["truth"]}
    ratio = truth["chinchilla: D*/N* at the budget"]
    assert ratio["estimate"]["lower_90"] <= ratio["truth"] <= ratio["estimate"]["upper_90"]
    # issue 11's acceptance: the decision first, in human units; the backtest's coverage beside the interval
    assert memo["answer"]["decision"]["sentence"].startswith("**Approve the plan**: 70B parameters on 1.4T tokens")
    assert "in the backtest, chinchilla's calibrated 90% intervals covered" in memo["answer"]["headline"][0]
    assert memo["diagnostics"]["banner"] is None
    print(f"full demo: {wall:.1f} s in-process")


@pytest.mark.slow
def test_epoch_memo_two_laws_and_backtest(epoch_runs, tmp_path):
    """Issue 5's acceptance on the real data: D*/N* consistent with issue 3; the plan flagged with its regret."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        memo = build_memo(epoch_runs, ["chinchilla", "kaplan"], budget=5.88e23, plan=PLAN, target=1.95,
                          holdout_top="20%", progress=False)
    assert isinstance(memo, Memo)
    assert memo.evidence.scores[0].name == "chinchilla"
    assert 15 <= memo.answer.allocation.ratio.median <= 22
    assert memo.answer.regret is not None and memo.answer.plan_status is not None
    assert [b.name for b in memo.evidence.backtest] == ["chinchilla", "kaplan"]
    chin = next(r for r in memo.sensitivity.rows if r.name == "chinchilla")
    assert 15 <= chin.ratio.median <= 22
    paths = write_memo(memo, tmp_path / "memo")
    md = paths["markdown"].read_text()
    assert "### The plan against the optimum" in md and "Backtest of the largest runs" in md
    # issue 11's acceptance: a decision sentence in human units first; the backtest coverage (about half at
    # 90%) beside the headline interval, with the miscalibration caveat; kaplan's disagreement stated
    d = memo.answer.decision
    assert d.sentence.startswith("**Approve the plan**: 70B parameters on 1.4T tokens (5.9e23 FLOPs)")
    summary = md[md.index("## Summary"):md.index("## The question")]
    assert summary.index(d.sentence) < summary.index("- Predicted loss")
    # issue 13: the stated intervals are the calibrated band, and the coverage beside them is that band's;
    # the raw posterior predictive covers about half of the held-out runs at 90%
    chin = next(c for c in memo.evidence.coverage if c.name == "chinchilla")
    assert chin.calibrated and f"covered {chin.covered} of {chin.n_test} held-out runs" in memo.answer.headline[0]
    raw = next(b for b in memo.evidence.backtest if b.name == "chinchilla")
    assert raw.coverage_90 < 0.7 and chin.coverage_90 > raw.coverage_90
    assert memo.answer.caveats[0].startswith("**Miscalibration**") == chin.below_nominal
    assert memo.answer.disagreement and "kaplan alone" in memo.answer.disagreement


@pytest.mark.filterwarnings("ignore::bayescale.ConvergenceWarning")
def test_data_section_names_the_shipped_pilot_by_its_package_path():
    import bayescale
    from bayescale.data import pilot_path

    path = str(pilot_path())
    fit = bayescale.fit(path, law="chinchilla", chains=2, warmup=150, draws=150, seed=1, progress=False)
    memo = build_memo(fits=[fit], plan=PLAN, backtest=False, figures=False, progress=False)
    assert path.startswith("/") and memo.data.source == "bayescale/data/pilot_chinchilla.csv"
    assert "from `bayescale/data/pilot_chinchilla.csv` (shipped with bayescale)" in render_markdown(memo)


def test_loo_pit_check_for_each_answer_fit(epoch_memo):
    pit = epoch_memo.evidence.pit
    assert [r.name for r in pit] == ["chinchilla"] and pit[0].n == 240
    assert pit[0].verdict.startswith(("looks calibrated", "does not look calibrated"))
    md = render_markdown(epoch_memo)
    assert "### Calibration on the fitted runs (LOO-PIT)" in md and f"- chinchilla {pit[0].verdict}" in md
    assert "(loo_pit.png)" in md and any(f.name == "loo_pit" for f in epoch_memo.figures)
    summary = md[md.index("## Summary"):md.index("## The question")]
    assert "Calibration on the fitted runs (LOO-PIT" in summary


def test_memo_progress_is_on_by_default_and_reports_every_figure(epoch_fit, capsys):
    build_memo(fits=[epoch_fit], plan=PLAN, backtest=False)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines and all(line.startswith("[memo ") for line in lines)
    assert any("figure 1 of" in line for line in lines) and any("memo built in" in line for line in lines)
    assert sum("figure " in line for line in lines) >= 5


# --------------------------------------------------------------------------- every card with N and D


def _cards_of_n_and_d():
    from bayescale import list_laws, load_law

    out = []
    for name in list_laws():
        inputs = set(load_law(name).input_names)
        if "N" in inputs and inputs & {"D", "M"}:
            out.append(name)
    return out


CARDS_ND = _cards_of_n_and_d()


def test_the_cards_of_n_and_d_are_all_covered():
    assert set(CARDS_ND) >= {"chinchilla", "kaplan", "data_constrained", "overtraining"}


@pytest.fixture(scope="module")
def card_runs():
    from bayescale.data import pilot_chinchilla

    runs = pilot_chinchilla()
    runs["U"] = runs["D"] / 2          # two epochs over the unique tokens (data_constrained)
    runs["M"] = runs["D"] / runs["N"]  # tokens per parameter (overtraining)
    return runs


_CARD_FITS: dict = {}


def _card_fit(law, runs):
    """A short fit per card (shared by its two questions); its gate verdict is forced to pass so that the
    decision's allocation branches run too: this test is about the memo's code paths, not the statistics."""
    import bayescale

    if law not in _CARD_FITS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = bayescale.fit(runs, law=law, chains=2, warmup=150, draws=150, seed=1, progress=False)
        _CARD_FITS[law] = dataclasses.replace(fit, diagnostics=dataclasses.replace(fit.diagnostics, problems=(),
                                                                                   advice=()))
    return _CARD_FITS[law]


@pytest.mark.parametrize("question", ["plan", "budget"])
@pytest.mark.parametrize("law", CARDS_ND)
def test_memo_for_every_card_of_n_and_d(law, question, card_runs, tmp_path):
    """No card of N and D can crash the memo: a plan given as N, D (plus U where the card needs it) with its
    backtest, or a budget alone; both rendered, written, and stated in human units."""
    fit = _card_fit(law, card_runs)
    plan = {"N": 7e10, "D": 1.4e12, **({"U": 7e11} if "U" in fit.law.input_names else {})}
    # the backtest holds out the 4 largest runs by N: its 36 runs are padded to the fit's 48 rows, so the
    # refit reuses the fit's compiled sampler instead of compiling one (seconds per card)
    kwargs = (dict(plan=plan, target=2.0, holdout_top="10%", by="N") if question == "plan" else
              dict(budget=5.88e23, target=2.0, backtest=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        memo = build_memo(card_runs, fits=[fit], chains=2, warmup=150, draws=150, progress=False, **kwargs)
    d = memo.answer.decision
    if question == "plan":
        assert "70B parameters on 1.4T tokens" in d.sentence and d.action in ("approve", "change")
        assert memo.answer.plan.inputs["N"] == 7e10 and memo.evidence.backtest[0].n_test == 4
    else:
        assert d.action == "run" and " parameters on " in d.sentence
    assert {f.name for f in memo.figures} >= {"bands", "allocation", "ratio", "loo_pit", "sensitivity"}
    paths = write_memo(memo, tmp_path / "memo")
    assert paths["html"].read_text().count("data:image/png;base64,") == len(memo.figures)
    json.loads(paths["json"].read_text())


# --------------------------------------------------------------------------- figures (issue 11)


def test_figures_show_the_target_and_keep_their_titles(epoch_fit, epoch_memo):
    import warnings as _w

    from bayescale.memo.figures import plot_sensitivity
    from bayescale.mixture import weighted_quantile
    from bayescale.optimal import optimal
    from bayescale.plots.allocation import plot_ratio
    from bayescale.plots.bands import plot_bands
    from bayescale.plots._style import pyplot

    with _w.catch_warnings():
        _w.simplefilter("ignore")
        fig = plot_bands(epoch_fit, plan=PLAN, target=1.95)
    ax = fig.axes[0]
    assert any(tuple(line.get_ydata()) == (1.95, 1.95) for line in ax.lines)          # the target line
    assert "target loss 1.95" in [t.get_text() for t in ax.get_legend().get_texts()]
    fig = plot_sensitivity(epoch_memo.sensitivity, epoch_memo.answer.plan.loss, epoch_memo.answer.allocation.ratio,
                           target=1.95)
    assert any(tuple(line.get_xdata()) == (1.95, 1.95) for line in fig.axes[0].lines)
    fig.canvas.draw()
    box = fig.bbox
    for text in [a.title for a in fig.axes] + [fig._suptitle]:
        ext = text.get_window_extent()
        assert box.x0 - 1 <= ext.x0 and ext.x1 <= box.x1 + 1 and ext.y1 <= box.y1 + 1, text.get_text()  # not clipped
    # D*/N*: the axis spans the posterior's 99% range (and the plan), not the most extreme draw
    with _w.catch_warnings():
        _w.simplefilter("ignore")
        fig = plot_ratio(epoch_fit, 5.88e23, plan=PLAN)
        a = optimal(epoch_fit, [5.88e23])
    r = a.ratio[:, 0]
    q005, q995 = weighted_quantile(r[:, None], a.weights, [0.005, 0.995])[:, 0]
    lo, hi = fig.axes[0].get_xlim()
    assert q005 / 1.16 <= lo and hi <= max(q995, 20) * 1.16
    assert lo <= 20 <= hi
    pyplot().close("all")
