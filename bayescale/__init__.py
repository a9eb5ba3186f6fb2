"""bayescale: Bayesian neural scaling laws.

Fit a scaling law (a law card or a formula) to a table of training runs with
NUTS, and read off the posterior.  The public API is re-exported here.
"""

from .jaxsetup import configure as _configure

_configure()

from .backtest import Backtest, backtest, rollout  # noqa: E402
from .cards import Law, law_from_file, law_from_formula, list_laws, load_law, with_priors  # noqa: E402
from .compare import Comparison, compare, stacking_weights  # noqa: E402
from .decision import Choice, PlanRegret, choose_allocation, compute_for_loss, plan_regret  # noqa: E402
from .diagnostics import Diagnostics  # noqa: E402
from .evidence import Calibration, calibrate, rollout_compute  # noqa: E402
from .errors import (  # noqa: E402
    BayescaleError, CacheWarning, CardError, ConvergenceWarning, DataError, DataWarning, ExtrapolationWarning,
    FitFileError, FitRetried, FormulaError, PriorError,
)
from .fitting import fit  # noqa: E402
from .inference.fitset import FitSet, load_fitset  # noqa: E402
from .inference.many import fit_many  # noqa: E402
from .inference.sensitivity import Sensitivity, prior_sensitivity  # noqa: E402
from .model import make_model  # noqa: E402
from .noise import NOISE_MODELS  # noqa: E402
from .optimal import Allocation, optimal  # noqa: E402
from .predict import predict  # noqa: E402
from .result import Fit, load_fit  # noqa: E402
from .runs import Runs, prepare_runs  # noqa: E402

__all__ = [
    "Allocation", "Backtest", "BayescaleError", "CacheWarning", "Calibration", "CardError", "Choice",
    "Comparison", "ConvergenceWarning", "DataError", "DataWarning", "Diagnostics", "ExtrapolationWarning", "Fit",
    "FitFileError", "FitRetried", "FitSet", "FormulaError", "Law", "NOISE_MODELS", "PlanRegret", "PriorError", "Runs",
    "Sensitivity", "backtest", "calibrate", "choose_allocation", "compare", "compute_for_loss", "fit",
    "fit_many",    "law_from_file", "law_from_formula", "list_laws", "load_fit", "load_fitset", "load_law", "make_model", "optimal",
    "plan_regret", "predict", "prepare_runs", "prior_sensitivity", "rollout", "rollout_compute",
    "stacking_weights", "with_priors",
]
__version__ = "0.1.0"
