"""Evidence: what the runs can and cannot say about the next, larger run.

Modules, in pipeline order:

* :mod:`~bayescale.evidence.scoring` -- a :class:`Forecast` (predictive
  median, central intervals and log density at target points) and how it is
  scored against what happened (ARE, coverage, relative width, log
  predictive density);
* :mod:`~bayescale.evidence.structure` -- run and group columns: validation,
  thinning of checkpoints;
* :mod:`~bayescale.evidence.rollout` -- the compute rollout, a backtest
  inside the training data;
* :mod:`~bayescale.evidence.calibration` -- the correction of the predictive
  band learned from it, stored in the fit;
* :mod:`~bayescale.evidence.calibrated` -- that correction applied: the
  calibrated band and density;
* :mod:`~bayescale.evidence.lawcheck` -- the catalogue's other laws as a
  check on the named one;
* :mod:`~bayescale.evidence.predictive` -- posterior predictive, prior and prior
  predictive draws (the ArviZ groups of ``fit.idata``) and the LOO-PIT check.
"""

from .calibrated import calibrated_forecast
from .calibration import Calibration, calibrate, calibration_from_rollout
from .rollout import rollout_compute
from .scoring import Forecast, posterior_forecast, score, summarise
from .structure import RunStructure, structure_runs

__all__ = ["Calibration", "Forecast", "RunStructure", "calibrate", "calibrated_forecast",
           "calibration_from_rollout", "posterior_forecast", "rollout_compute", "score", "structure_runs",
           "summarise"]
