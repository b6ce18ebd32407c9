"""Measuring explainers: speed (and, later, agreement, faithfulness, plausibility, stability)."""
