"""Generic "folder of videos" (any layout, unlabelled; e.g. a pre-training corpus): task none.

Every video file under the root, recursively (hidden files and folders skipped), is a clip:

- clip id = its path relative to the root without the extension, folders joined by ``-`` and anything
  outside ``[A-Za-z0-9_-]`` replaced by ``_`` (``spk1/take 2.mp4`` -> ``spk1-take_2``); two files that
  map to the same id are reported as duplicates (the first one is kept);
- subject = the name of the folder ``subject_level`` levels above the file (option, default 1 = the
  parent folder; 0 makes every clip its own subject); a file too close to the root gets the root's name;
- options: ``extensions`` (comma-separated, default the common video extensions), ``audio_ext``
  (e.g. ``wav``: use a sibling ``<stem>.wav`` as the clip's audio when it exists, else the video's own
  track), ``official_lists`` (see ``avf.data.adapters.common.finish_scan``).

Media problems (empty, corrupt or audio-less files) are left to the decoding stages, which name the
file and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from avf.data.adapters.base import Adapter, RawClip, ScanResult, register_adapter
from avf.data.adapters.common import VIDEO_EXTS, ScanBuilder, finish_scan, opt_int, require_dir, sanitize_id


@register_adapter("folder")
class FolderAdapter(Adapter):
    task = "none"
    metrics = ()

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        exts = str(options.get("extensions", ",".join(e.lstrip(".") for e in VIDEO_EXTS)))
        self.extensions = {"." + e.strip().lower().lstrip(".") for e in exts.split(",") if e.strip()}
        if not self.extensions:
            raise ValueError("option extensions must name at least one file extension")
        self.subject_level = opt_int(options, "subject_level", 1)
        if self.subject_level < 0:
            raise ValueError(f"option subject_level={self.subject_level} must be >= 0")
        audio_ext = str(options.get("audio_ext", "") or "").strip().lstrip(".")
        self.audio_ext = f".{audio_ext}" if audio_ext else None

    def clip_id(self, rel: Path) -> str:
        return "-".join(sanitize_id(part) for part in rel.with_suffix("").parts)

    def subject(self, root: Path, rel: Path) -> str:
        if self.subject_level == 0:
            return self.clip_id(rel)
        folders = rel.parts[:-1]
        if len(folders) >= self.subject_level:
            return folders[len(folders) - self.subject_level]
        return root.name

    def scan(self, root: Path) -> ScanResult:
        root = require_dir(root)
        out = ScanBuilder(self.name)
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in self.extensions:
                continue
            if not path.is_file():
                continue
            audio = None
            if self.audio_ext is not None:
                sibling = path.with_suffix(self.audio_ext)
                audio = sibling if sibling.is_file() else None
            out.add(
                RawClip(
                    clip_id=self.clip_id(rel),
                    dataset=self.name,
                    subject=self.subject(root, rel),
                    video_path=path,
                    audio_path=audio,
                    extra={"relative_path": rel.as_posix()},
                )
            )
        if not out.clips and not out.problems:
            raise FileNotFoundError(f"no video files ({', '.join(sorted(self.extensions))}) under {root}")
        return finish_scan(self, out, root)
