"""avf: AVF-MAE++ (audio-visual masked autoencoders for affective video facial analysis) as a pipeline."""

__version__ = "0.1.0"
