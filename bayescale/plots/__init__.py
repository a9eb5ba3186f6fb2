"""Figures (matplotlib, log-log where the axes are scales).

One module per figure family; each function takes result objects (a Fit, a
prediction DataFrame, an allocation result, a comparison) and returns a
matplotlib Figure, never calling ``plt.show``.  matplotlib is imported inside
the functions with the non-interactive Agg backend.
"""
