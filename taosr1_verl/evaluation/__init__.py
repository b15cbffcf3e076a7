"""Evaluation: label metrics (scikit-learn), generate vs first-token modes, reports with plots."""
