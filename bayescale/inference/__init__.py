"""Inference machinery beyond a single fit: simulation-based calibration (:mod:`.sbc`)."""
