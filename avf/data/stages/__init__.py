"""The four data stages as library functions, one module each (the ``avf data`` commands are thin wrappers).

``faces`` -> ``audio`` -> ``manifest`` -> ``shards``, each over one dataset of ``params.data.datasets``:

- **faces** (:func:`avf.data.stages.faces.run_faces`): adapter scan, then per clip ``<out>/<clip_id>.mkv``
  (JPEG face frames, see ``avf.data.face``) and ``<out>/<clip_id>.json`` (status or reason, coverage, exact
  frame times, crop boxes, fingerprint).
- **audio** (:func:`avf.data.stages.audio.run_audio`): per clip with a face clip, ``<out>/<clip_id>.wav``
  (16 kHz mono, sample 0 = first face frame) and ``<out>/<clip_id>.json`` (audio status, level, fingerprint).
- **manifest** (:func:`avf.data.stages.manifest.run_manifest`): the Parquet clip index (``avf.data.manifest``).
- **shards** (:func:`avf.data.stages.shards.run_shards`): WebDataset shards of the usable clips
  (``avf.data.shards``).

Outputs are written atomically (temp file, then rename). A clip whose sidecar carries the same
*fingerprint* (stage version, the stage's parameters, and the size and modification time of its
inputs) is skipped on a re-run, so an interrupted stage resumes and a changed parameter redoes the
work; deterministic failures are cached the same way, unexpected errors are retried. Failures go to
the :class:`~avf.data.report.StageReport` with the file and the reason; :mod:`.record` logs a finished
stage to MLflow.

This ``__init__`` imports nothing, so each stage's code (its DVC deps) is only its own module's imports.
"""
