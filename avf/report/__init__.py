"""Reports people read: ablation comparisons of DVC experiments."""
