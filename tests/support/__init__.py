"""Helpers the tests share: generated media and dataset trees, tiny models, a toy task, real local servers."""
