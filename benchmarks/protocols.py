"""The fixed calibration protocols of ``shared/CALIBRATION.md`` (T1-T5), as data splits.

Each ``task_*`` function reads one shared dataset in place and returns a
:class:`Task`: a law, the column naming the training run (checkpoint data)
and one or more :class:`Split` s, each with the rows a method may fit on,
the target inputs it must predict and, for scoring only, the truth ``y``.
A method sees ``split.train`` and ``split.targets`` (inputs, no response),
never ``split.y``; the benchmark scores its forecast afterwards.

Why these live beside the benchmark and not in the package: they hard-code
the shared datasets' file names, filters and target definitions, which mean
nothing on a user's data; what *is* generic -- forecasts, scoring, the
compute rollout and the calibration learned from it -- is in
``bayescale.evidence``.  Slow tests import this module too.

``quick=True`` gives a development subset (fewer pairs, setups and curves);
its numbers are not the protocol's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("BAYESCALE_SHARED", REPO.parent / "shared"))
DATASETS = SHARED / "datasets"


@dataclass(frozen=True)
class Split:
    """Rows to fit on, target inputs to predict, the truth (for scoring only)."""

    train: pd.DataFrame
    targets: pd.DataFrame
    y: np.ndarray
    label: str = ""
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """One protocol: a law, its splits, and how to read the table.

    ``kind``: ``"loss"`` (forecast the targets' response), ``"exponent"``
    (posterior of the compute-optimal exponent a, scored against a reference
    value in ``split.y``) or ``"thinning"`` (two splits of the same targets,
    all checkpoints and every 5th: the ratio of the band widths).
    """

    name: str
    title: str
    law: str
    splits: tuple
    kind: str = "loss"
    run: str | None = None
    mapping: dict | None = None
    response: str = "loss"


def _path(*parts) -> Path:
    path = DATASETS.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (set BAYESCALE_SHARED to the shared folder)")
    return path


# --------------------------------------------------------------------------- T1 Epoch


def epoch() -> pd.DataFrame:
    frame = pd.read_csv(_path("chinchilla_epoch", "chinchilla_epoch_tidy.csv"))
    frame = frame[frame["epoch_outlier"] == 0][["N", "D", "C", "loss"]]
    # ties in C broken by N (CALIBRATION.md)
    return frame.sort_values(["C", "N"], kind="mergesort").reset_index(drop=True)


def _loss_split(train: pd.DataFrame, test: pd.DataFrame, label: str = "", response: str = "loss") -> Split:
    inputs = [c for c in ("N", "D", "x") if c in test.columns]
    return Split(train=train.reset_index(drop=True), targets=test[inputs].reset_index(drop=True),
                 y=test[response].to_numpy(float), label=label)


def task_t1_top(fraction: float, name: str) -> Task:
    frame = epoch()
    n_hold = int(round(fraction * len(frame)))
    split = _loss_split(frame.iloc[:-n_hold], frame.iloc[-n_hold:], f"top {fraction:.0%} by C")
    return Task(name, f"Epoch, top {fraction:.0%} of compute held out", "chinchilla", (split,))


def task_t1c() -> Task:
    frame = epoch()
    blocks = np.array_split(np.arange(len(frame)), 4)
    splits = []
    for j in range(1, 4):
        train = frame.iloc[np.concatenate(blocks[:j])]
        splits.append(_loss_split(train, frame.iloc[blocks[j]], f"fit blocks 1-{j}, predict {j + 1}"))
    return Task("T1c", "Epoch, rollout over 4 compute blocks", "chinchilla", tuple(splits))


# --------------------------------------------------------------------------- T2 Gemstones


def gemstones() -> pd.DataFrame:
    frame = pd.read_csv(_path("gemstones", "gemstones_tidy.csv"))
    keep = (frame["schedule"] == "constant_lr") & (frame["lr_setting"] == "base") & (frame["D"] >= 1e10)
    frame = frame[keep][["model", "N", "D", "C", "loss"]]
    return frame.sort_values(["N", "model", "D"], kind="mergesort").reset_index(drop=True)


def _final_targets(frame: pd.DataFrame, models) -> tuple[pd.DataFrame, np.ndarray]:
    """Per run: its N and final D; y = the mean loss of its last 3 checkpoints."""
    rows, y = [], []
    for model in models:
        run = frame[frame["model"] == model].sort_values("D")
        rows.append({"model": model, "N": float(run["N"].iloc[-1]), "D": float(run["D"].iloc[-1])})
        y.append(float(run["loss"].iloc[-3:].mean()))
    return pd.DataFrame(rows)[["N", "D"]], np.asarray(y)


def _every(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """Every k-th checkpoint of each run (by D, starting with the first)."""
    parts = [run.sort_values("D").iloc[::k] for _, run in frame.groupby("model", sort=False)]
    return pd.concat(parts).reset_index(drop=True)


def _t2a_split(thin: int = 1) -> Split:
    frame = gemstones()
    train = frame[frame["N"] < 1e9]
    if thin > 1:
        train = _every(train, thin)
    models = sorted(frame.loc[frame["N"] >= 1e9, "model"].unique(), key=lambda m: frame.loc[frame.model == m, "N"].iloc[0])
    targets, y = _final_targets(frame, models)
    return Split(train.reset_index(drop=True), targets, y, "all checkpoints" if thin == 1 else f"every {thin}th",
                 extra={"models": models})


def task_t2a() -> Task:
    return Task("T2a", "Gemstones size extrapolation (N < 1e9 -> N >= 1e9)", "chinchilla", (_t2a_split(),),
                run="model")


def task_t2b() -> Task:
    frame = gemstones()
    models = list(dict.fromkeys(frame["model"]))
    targets, y = _final_targets(frame, models)
    split = Split(frame[frame["D"] <= 1e11].reset_index(drop=True), targets, y, "D <= 1e11",
                  extra={"models": models})
    return Task("T2b", "Gemstones token extrapolation (D <= 1e11 -> final)", "chinchilla", (split,), run="model")


def task_t2c() -> Task:
    return Task("T2c", "Gemstones T2a with every 5th checkpoint (width ratio)", "chinchilla",
                (_t2a_split(1), _t2a_split(5)), kind="thinning", run="model")


T2D_A = ("768x45", "1280x15", "1792x7", "1024x28")
T2D_B = ("1280x36", "2560x8", "1792x18")
T2D_TARGETS = ("2048x27", "1536x50", "3072x12")


def task_t2d(quick: bool = False) -> Task:
    frame = gemstones()
    targets, y = _final_targets(frame, T2D_TARGETS)
    pairs = [(a, b) for a in T2D_A for b in T2D_B]
    if quick:
        pairs = pairs[::4]
    splits = tuple(Split(frame[frame["model"].isin([a, b])].reset_index(drop=True), targets, y, f"{a} + {b}",
                         extra={"models": list(T2D_TARGETS)}) for a, b in pairs)
    return Task("T2d", "Gemstones two shapes -> three ~2B shapes", "chinchilla", splits, run="model")


# --------------------------------------------------------------------------- T3 Porian

PORIAN_A = "basic_n_exponent"


def task_t3(quick: bool = False) -> Task:
    points = pd.read_csv(_path("porian_compute_optimal", "isoflop_points.csv"))
    ref = pd.read_csv(_path("porian_compute_optimal", "fit_results_reference.csv")).set_index("config_id")
    configs = list(ref.index)
    if quick:
        configs = configs[::3]
    splits = []
    for cid in configs:
        part = points[points["config_id"] == cid][["N", "D", "C", "loss"]].reset_index(drop=True)
        budgets = np.array([part["C"].min(), part["C"].max()])
        splits.append(Split(part, pd.DataFrame({"C": budgets}), np.array([float(ref.loc[cid, PORIAN_A])]),
                            str(ref.loc[cid, "label"]) + f" [{cid}]"))
    return Task("T3", "Porian, compute-optimal exponent a per setup", "chinchilla", tuple(splits), kind="exponent")


# --------------------------------------------------------------------------- T4 Revisiting NSL


def task_t4(quick: bool = False, file: str = "benchmark.lang.dedup.csv") -> Task:
    frame = pd.read_csv(_path("revisiting_nsl_benchmark", file))
    frame = frame.rename(columns={"Seen Examples": "x", "Loss": "loss"})
    curves = list(frame.groupby(["Domain", "Task", "Model"], sort=True))
    if quick:
        curves = curves[::3]
    splits = []
    for key, part in curves:
        train = part[part["Training"] == 1][["x", "loss"]]
        test = part[part["Training"] == 0]
        splits.append(_loss_split(train, test, " / ".join(map(str, key))))
    return Task("T4", f"Revisiting NSL learning curves ({file})", "power_law_constant", tuple(splits))


# --------------------------------------------------------------------------- T5 Pythia


def task_t5() -> Task:
    frame = pd.read_csv(_path("pythia_evals", "pythia_zero_shot_tidy.csv"))
    frame = frame[(frame["deduped"] == 0) & (frame["step"] >= 1000)]
    frame = frame[["model", "N", "D", "step", "lambada_openai_logppl"]].rename(
        columns={"lambada_openai_logppl": "loss"})
    train = frame[frame["N"] <= 3e9]
    test = frame[(frame["N"] > 3e9)]
    test = test[test["step"] == test.groupby("model")["step"].transform("max")].sort_values("N")
    split = _loss_split(train, test, "<= 2.8B -> 6.9B, 12B")
    return Task("T5", "Pythia LAMBADA log-perplexity, size extrapolation", "chinchilla", (split,), run="model")


def all_tasks(quick: bool = False, only=None) -> list[Task]:
    """Every protocol in CALIBRATION.md order (``only``: names such as ``["T1a", "T2d"]``)."""
    builders = {
        "T1a": lambda: task_t1_top(0.1, "T1a"), "T1b": lambda: task_t1_top(0.2, "T1b"), "T1c": task_t1c,
        "T2a": task_t2a, "T2b": task_t2b, "T2c": task_t2c, "T2d": lambda: task_t2d(quick),
        "T3": lambda: task_t3(quick), "T4": lambda: task_t4(quick), "T5": task_t5,
    }
    names = list(builders) if not only else list(only)
    unknown = [n for n in names if n not in builders]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; tasks are {list(builders)}")
    return [builders[n]() for n in names]
