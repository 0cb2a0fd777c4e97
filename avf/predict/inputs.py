"""What ``avf predict PATH...`` means: files, folders, globs and manifests expanded to video paths."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

__all__ = ["MANIFEST_SUFFIXES", "expand_inputs", "read_manifest_paths"]

MANIFEST_SUFFIXES = (".parquet", ".csv", ".txt")
_GLOB_CHARS = set("*?[")


def read_manifest_paths(path: Path) -> list[str]:
    """Video paths of a manifest: Parquet/CSV with a ``video_path`` (the data manifest) or ``video``
    column, or a text file with one path per line; relative paths are taken from the manifest's folder."""
    if path.suffix == ".txt":
        rows = [line.strip() for line in path.read_text().splitlines()]
        paths = [r for r in rows if r and not r.startswith("#")]
    else:
        import pandas as pd

        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        col = next((c for c in ("video_path", "video") if c in df.columns), None)
        if col is None:
            raise ValueError(f"{path}: a manifest needs a 'video_path' or 'video' column, has {list(df.columns)}")
        paths = [str(p) for p in df[col].dropna()]
    return [p if Path(p).is_absolute() else str(path.parent / p) for p in paths]


def expand_inputs(args: Sequence[str | Path], extensions: Sequence[str]) -> list[str]:
    """Video paths in argument order, without repeats.

    A folder gives its files with a video extension (recursively, sorted); a pattern with ``*``, ``?``
    or ``[`` is a glob (``**`` recurses); a ``.parquet``/``.csv``/``.txt`` file is a manifest; any
    other argument is a video, whatever its extension (a missing file is kept: it is reported as an
    error in the output rather than silently skipped).
    """
    exts = {e.lower() for e in extensions}
    out: list[str] = []
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            out += sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
        elif not p.exists() and _GLOB_CHARS & set(str(arg)):
            hits = sorted(glob.glob(str(arg), recursive=True))
            out += [h for h in hits if Path(h).is_file() and Path(h).suffix.lower() in exts]
        elif p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            out += read_manifest_paths(p)
        else:
            out.append(str(p))
    return list(dict.fromkeys(out))
