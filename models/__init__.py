"""Law cards: one TOML file per scaling law (formula, inputs, priors, noise model, citation).

This package holds data only. The cards are read and compiled by ``bayescale``; see any
``*.toml`` file here for the card format.
"""
