"""Evidence about a fit beyond its posterior: predictive checks and calibration.

* :mod:`bayescale.evidence.predictive`: posterior predictive, prior and prior
  predictive draws (the ArviZ groups of ``fit.idata``) and the LOO-PIT check.
"""
