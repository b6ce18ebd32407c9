"""Measuring explainers: agreement, faithfulness, plausibility, stability, fidelity and speed."""
