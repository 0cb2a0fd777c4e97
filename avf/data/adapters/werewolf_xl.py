"""Werewolf-XL (dimensional regression: arousal, valence, dominance; 5 folds by game session).

Sample id ``GG_PP_NNN``: game 01..30, player seat 01..09, utterance index (not zero-padded in the
published lists, e.g. ``01_02_94``). Folds: games {01-06}, {07-12}, {13-18}, {19-24}, {25-30}.
Subject = ``GG_PP`` (one player seat in one game; identities across games are not published).

The raw release's layout is not documented publicly, so this adapter reads the layout that the
HiCMAE preprocessing produces: faces ``openface/<id>/<id>_aligned/`` (a frame folder,
``extra['frames'] = True``; the face/video stage must accept a frame folder) and audio
``audio_16k/<id>.wav``. Targets come from a label table, option ``labels`` (default
``labels.csv`` at the root; ``.csv`` or ``.xlsx`` with columns ``id, arousal, valence, dominance``),
or, when no table exists and ``official_lists`` is set, from the HiCMAE list files themselves
(columns 3..5, assumed to be arousal, valence, dominance as in the published tables).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from avf.data.adapters.base import Adapter, RawClip, ScanResult, register_adapter
from avf.data.adapters.common import ScanBuilder, finish_scan, opt_path, require_dir
from avf.data.adapters.tables import read_records

TARGETS = ("arousal", "valence", "dominance")
_ID = re.compile(r"^(\d{2})_(\d{2})_(\d+)$")


def fold_of_game(game: int) -> int:
    """Test fold (1..5) of a game session: six consecutive games per fold."""
    return (game - 1) // 6 + 1


@register_adapter("werewolf_xl")
class WerewolfXLAdapter(Adapter):
    task = "regression"
    target_names = TARGETS
    num_folds = 5
    metrics = ("pcc", "ccc", "rmse")

    def _labels(self, root: Path, out: ScanBuilder) -> dict[str, tuple[float, ...]]:
        table = opt_path(self.options, "labels", root, "labels.csv")
        if table is not None and table.is_file():
            labels: dict[str, tuple[float, ...]] = {}
            for row in read_records(table, ("id", *TARGETS)):
                try:
                    labels[row["id"]] = tuple(float(row[t]) for t in TARGETS)
                except ValueError:
                    out.problem(table, f"non-numeric targets for {row['id']!r}")
            return labels
        lists = opt_path(self.options, "official_lists", root)
        if lists is None:
            raise FileNotFoundError(
                f"Werewolf-XL: no label table {table} and no official_lists option to take the targets from"
            )
        from avf.data.adapters.listfiles import read_official_splits

        splits = read_official_splits(lists, self)
        return {str(r.clip_id): tuple(r.targets) for r in splits.itertuples() if r.targets is not None}

    def scan(self, root: Path) -> ScanResult:
        root = require_dir(root)
        faces = root / "openface"
        if not faces.is_dir():
            raise FileNotFoundError(f"Werewolf-XL root {root} has no openface/ folder of face frames")
        out = ScanBuilder(self.name)
        labels = self._labels(root, out)
        for folder in sorted(p for p in faces.iterdir() if p.is_dir()):
            clip_id = folder.name
            match = _ID.match(clip_id)
            if not match or not 1 <= int(match.group(1)) <= 30:
                out.problem(folder, "malformed Werewolf-XL id (expected GG_PP_NNN with game 01..30)")
                continue
            frames = folder / f"{clip_id}_aligned"
            if not frames.is_dir():
                out.problem(folder, f"no {frames.name}/ frame folder")
                continue
            targets = labels.get(clip_id)
            if targets is None:
                out.problem(folder, "no targets in the label table")
                continue
            if len(targets) != len(TARGETS) or not all(math.isfinite(v) for v in targets):
                out.problem(folder, f"expected 3 finite targets, got {targets}")
                continue
            wav = root / "audio_16k" / f"{clip_id}.wav"
            if not wav.is_file():
                out.problem(folder, f"audio missing: no audio_16k/{wav.name}")
                continue
            game, seat = int(match.group(1)), int(match.group(2))
            out.add(
                RawClip(
                    clip_id=clip_id,
                    dataset=self.name,
                    subject=f"{game:02d}_{seat:02d}",
                    video_path=frames,
                    audio_path=wav,
                    targets=targets,
                    test_fold=fold_of_game(game),
                    extra={"frames": True, "game": game},
                )
            )
        return finish_scan(self, out, root)
