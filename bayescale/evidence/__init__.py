"""Evidence: what the runs can and cannot say about the next, larger run.

Modules, in pipeline order:

* :mod:`~bayescale.evidence.scoring` -- a :class:`Forecast` (predictive
  median, central intervals and log density at target points) and how it is
  scored against what happened (ARE, coverage, relative width, log
  predictive density).
"""

from .scoring import Forecast, posterior_forecast, score, summarise

__all__ = ["Forecast", "posterior_forecast", "score", "summarise"]
