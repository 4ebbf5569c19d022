"""Cross-backend verification: tensor and box comparison, per-stage runs, bisection, reports."""
