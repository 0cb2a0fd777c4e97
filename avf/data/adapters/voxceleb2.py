"""VoxCeleb2-dev (pre-training corpus, task none): ``<identity>/<youtube id>/<clip>.mp4``.

The root may be the identity level itself (``dev/mp4/``, ``videos/``), or any folder above it: the
official ``dev/mp4/``, HiCMAE's ``video/file~/dev/mp4/`` and AVF-MAE's ``videos/`` (in
``Voxceleb2-dev/``) are looked for first, else the root is taken as the identity level. Identities are
``idNNNNN`` folders; clip id = ``<identity>_<youtube id>_<clip>``, subject = identity.

Audio: the official release ships audio separately (``dev/aac/.../<clip>.m4a``); HiCMAE converts it to
``audio/file~/dev/aac/.../<clip>.wav`` (16 kHz). The twin path is found by swapping the ``mp4`` folder for
``aac`` (and ``video`` for ``audio`` in HiCMAE's tree) and preferring ``.wav`` over ``.m4a``; with no
twin, ``audio_path`` is None and the mp4's own track is used. In AVF-MAE's tree the wav is where its
pre-training loader derives it (every ``videos`` in the path -> ``audio_16k``, ``.mp4`` -> ``.wav``:
``Voxceleb2-dev/audio_16k/...``), and a clip without it is reported and skipped, since that loader
would fail on it. Empty (0-byte) files are reported; deeper
checks (undecodable files, audio/video duration mismatch) belong to the decoding stage.
"""

from __future__ import annotations

import re
from pathlib import Path

from avf.data.adapters.base import Adapter, RawClip, ScanResult, register_adapter
from avf.data.adapters.common import ScanBuilder, finish_scan, require_dir
from avf.data.adapters.listfiles import derive_pretrain_audio

_IDENTITY = re.compile(r"^id\d+$")
_LEVELS = (Path("dev/mp4"), Path("video/file~/dev/mp4"), Path("mp4"), Path("videos"))


def _audio_root(mp4_root: Path) -> Path | None:
    """The aac twin of an ``.../mp4`` folder (``video`` -> ``audio`` too in HiCMAE's tree)."""
    if mp4_root.name != "mp4":
        return None
    parts = list(mp4_root.parts)
    parts[-1] = "aac"
    if "video" in parts:
        parts[len(parts) - 1 - parts[::-1].index("video")] = "audio"
    twin = Path(*parts)
    return twin if twin.is_dir() else None


@register_adapter("voxceleb2")
class VoxCeleb2Adapter(Adapter):
    task = "none"
    metrics = ()

    def list_clip_id(self, frame_dir: str, audio_path: str | None = None) -> str:
        parts = frame_dir.replace("\\", "/").removesuffix(".mp4").split("/")
        return "_".join(parts[-3:])

    def scan(self, root: Path) -> ScanResult:
        root = require_dir(root)
        mp4_root = next((root / level for level in _LEVELS if (root / level).is_dir()), root)
        identities = sorted(p for p in mp4_root.iterdir() if p.is_dir() and _IDENTITY.match(p.name))
        if not identities:
            raise FileNotFoundError(f"VoxCeleb2 root {root}: no idNNNNN identity folders (looked in {mp4_root})")
        audio_root = _audio_root(mp4_root)
        out = ScanBuilder(self.name)
        for identity in identities:
            for video in sorted(identity.glob("*/*")):
                if video.suffix.lower() != ".mp4":
                    continue
                if video.stat().st_size == 0:
                    out.problem(video, "empty file (0 bytes)")
                    continue
                relative = video.relative_to(mp4_root)
                audio: Path | None = None
                if mp4_root.name == "videos":
                    # the official rule applied below the dataset root (the root's own path may say "videos")
                    audio = mp4_root.parent / derive_pretrain_audio(str(video.relative_to(mp4_root.parent)))
                    if not audio.is_file():
                        out.problem(video, f"audio missing: {audio} (AVF-MAE's videos -> audio_16k rule)")
                        continue
                elif audio_root is not None:
                    for ext in (".wav", ".m4a"):
                        candidate = (audio_root / relative).with_suffix(ext)
                        if candidate.is_file():
                            audio = candidate
                            break
                out.add(
                    RawClip(
                        clip_id=f"{identity.name}_{video.parent.name}_{video.stem}",
                        dataset=self.name,
                        subject=identity.name,
                        video_path=video,
                        audio_path=audio,
                    )
                )
        return finish_scan(self, out, root)
