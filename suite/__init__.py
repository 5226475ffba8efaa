"""Reproducibility suite: regenerate paper tables, compare them cell by cell, gate regressions."""

__version__ = "0.1.0"
