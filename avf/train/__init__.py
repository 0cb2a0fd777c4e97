"""Training: one plain-torch loop (``loop``), the three stages (``stages``), and ``launch``, which runs a
stage in process or on Ray Train (``avf.runtime.ray_train``)."""
