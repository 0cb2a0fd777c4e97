"""Training: one plain-torch loop (``loop``), the three stages (``stages``) and the Ray wrapper (``ray_entry``)."""
