"""Evaluation: metrics (UAR, WAR, F1, PCC, CCC), test-view aggregation, reports and plots."""
