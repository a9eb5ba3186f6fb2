"""Decision memos: what a team lead reads before approving a big run.

:func:`build_memo` runs the pipeline once (fit every law, compare by
PSIS-LOO, backtest on the largest runs, predict the plan, allocate the
budget, score the plan's regret, check every fit) and returns a frozen
:class:`Memo` holding every number and figure.  Renderers only read it:
:func:`render_markdown`, :func:`render_html` (self-contained, figures
embedded) and :func:`write_memo` (a directory with ``memo.md``,
``memo.html``, ``memo.json``, the figures and the fits).

    memo = build_memo("runs.csv", ["chinchilla", "kaplan"], budget=5.88e23,
                      plan={"N": 7e10, "D": 1.4e12}, target=1.95)
    write_memo(memo, "memo/")
"""

from .build import build_memo
from .html import render_html
from .markdown import render_markdown
from .model import (AllocationAnswer, Answer, BacktestScore, DataSummary, DiagnosticsReport, Estimate, Evidence,
                    Figure, FitCheck, FitScore, Memo, ParamRow, PlanAnswer, Question, RangeRow, Reproducibility,
                    Sensitivity, SensitivityRow, TruthRow)
from .write import check_out_dir, write_memo

__all__ = ["AllocationAnswer", "Answer", "BacktestScore", "DataSummary", "DiagnosticsReport", "Estimate",
           "Evidence", "Figure", "FitCheck", "FitScore", "Memo", "ParamRow", "PlanAnswer", "Question", "RangeRow",
           "Reproducibility", "Sensitivity", "SensitivityRow", "TruthRow", "build_memo", "check_out_dir",
           "render_html", "render_markdown", "write_memo"]
