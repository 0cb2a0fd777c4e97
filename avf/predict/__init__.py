"""Prediction on raw videos with a fine-tuned model (``avf predict``), export and batch inference.

* :class:`Predictor` (``avf.predict.predictor``): load any model source, predict per window and per video.
* ``avf.predict.source``: model URIs (stage folder, .safetensors, official checkpoint, package, ``models:/``).
* ``avf.predict.prepare``: the training preprocessing applied to sliding windows of a raw video.
* ``avf.predict.outputs``: JSON Lines / CSV / DataFrame / Arrow records.
* ``avf.predict.plot`` / ``avf.predict.render``: timeline PNG and annotated MP4.
* ``avf.predict.export``: self-contained package folder and ONNX file.
* ``avf.predict.batch``: the same predictor as a Ray Data job writing Parquet.
"""

from avf.predict.predictor import Predictor, VideoPrediction, WindowPrediction
from avf.predict.source import ModelSpec, load_model

__all__ = ["ModelSpec", "Predictor", "VideoPrediction", "WindowPrediction", "load_model"]
