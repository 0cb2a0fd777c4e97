"""Model files: weights (safetensors), stage outputs with their cards, training checkpoints, official checkpoints.

Every read or write of a model file goes through here; ``avf.models`` itself does no file I/O.
"""
