"""``--plot``: one timeline PNG per video (what the model saw and said, over time).

Layout, top to bottom: face thumbnails (the crops the model saw, evenly spaced; grey = no face
there), the class probabilities over time as a stacked area (regression: one line per target;
windows averaged where they overlap; hatched = no prediction), and two status strips (face
detected, audio ok / silent / missing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avf.data.video import decode_jpeg
from avf.predict.predictor import VideoPrediction
from avf.predict.source import ModelSpec
from avf.predict.timeline import audio_status_at, face_at, scores_at

__all__ = ["timeline_png"]

WIDTH_IN = 10.0
LEFT, RIGHT = 0.07, 0.83  # axes span (figure fractions); the legend sits on the right
STATUS_COLORS = {"ok": "#4caf50", "silent": "#ffb300", "missing": "#e53935", "face": "#4caf50", "none": "#e53935"}


def _thumbs(pred: VideoPrediction, n: int) -> list[tuple[float, np.ndarray | None]]:
    """``n`` (time, RGB crop or None) pairs at the centres of equal segments of the video."""
    prep = pred.prepared
    assert prep is not None
    centres = (np.arange(n) + 0.5) * pred.duration_s / n
    idx, detected = face_at(prep, centres)
    return [
        (float(t), decode_jpeg(prep.face.jpegs[i]) if i >= 0 and d else None)
        for t, i, d in zip(centres, idx, detected, strict=True)
    ]


def timeline_png(pred: VideoPrediction, spec: ModelSpec, path: str | Path, thumbnails: int = 8) -> Path:
    """Draw the timeline of a prediction made with ``keep_prepared=True``; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if pred.prepared is None:
        raise ValueError("timeline_png needs the prepared video (predict with keep_prepared=True)")
    prep, dur = pred.prepared, max(pred.duration_s, 1e-3)
    axes_w = WIDTH_IN * (RIGHT - LEFT)
    tile_in = axes_w / max(thumbnails, 1) * 0.92
    heights = {"top": 0.55, "thumbs": tile_in + 0.08 if thumbnails else 0.0, "gap": 0.12, "main": 2.5}
    heights |= {"strip": 0.62, "bottom": 0.5}
    total = sum(heights.values())
    fig = plt.figure(figsize=(WIDTH_IN, total), dpi=100)

    def axes(bottom_in: float, height_in: float) -> plt.Axes:
        return fig.add_axes((LEFT, bottom_in / total, RIGHT - LEFT, height_in / total))

    y = heights["bottom"]
    strip = axes(y, heights["strip"])
    y += heights["strip"]
    main = axes(y, heights["main"])
    y += heights["main"] + heights["gap"]

    # scores over time
    t = np.linspace(0.0, dur, 600)
    s = scores_at(pred, t)
    names = list(spec.outputs)
    colors = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")(np.arange(len(names)) % 20)
    none = np.isnan(s).any(axis=1) if s.size else np.ones(len(t), bool)
    if spec.task == "classification" and s.size:
        main.stackplot(t, np.nan_to_num(s).T, labels=names, colors=colors, alpha=0.9, linewidth=0)
        main.set_ylim(0, 1)
        main.set_ylabel("probability")
    elif s.size:
        for j, name in enumerate(names):
            main.plot(t, s[:, j], label=name, color=colors[j], linewidth=2)
        main.axhline(0, color="#999", linewidth=0.8)
        main.set_ylabel("prediction")
    main.fill_between(
        t,
        0,
        1,
        where=none,
        transform=main.get_xaxis_transform(),
        facecolor="none",
        edgecolor="#9e9e9e",
        hatch="///",
        linewidth=0,
        label="no prediction",
    )
    main.set_xlim(0, dur)
    main.tick_params(labelbottom=False)
    main.grid(axis="y", alpha=0.3)
    main.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)

    # status strips: window predicted, face detected (per frame), audio level (0.1 s bins)
    rel = prep.frame_times - prep.t0
    _, detected = face_at(prep, rel)
    step = prep.frame_step
    for on, color in ((True, STATUS_COLORS["face"]), (False, STATUS_COLORS["none"])):
        spans = [(float(x), step) for x, d in zip(rel, detected, strict=True) if d == on]
        strip.broken_barh(spans, (1.1, 0.8), facecolors=color, linewidth=0)
    edges = np.append(np.arange(0.0, dur, 0.1), dur)
    for x0, x1, st in zip(edges[:-1], edges[1:], audio_status_at(prep, edges, spec.audio), strict=True):
        strip.broken_barh([(float(x0), float(x1 - x0))], (0.1, 0.8), facecolors=STATUS_COLORS[st], linewidth=0)
    for w in pred.windows:
        mid = (w.start_s + w.end_s) / 2
        if w.predicted:
            strip.plot(mid, 2.5, "o", color=STATUS_COLORS["ok"], markersize=6)
        else:
            strip.plot(mid, 2.5, "x", color=STATUS_COLORS["missing"], markersize=7, markeredgewidth=2)
    strip.set_yticks([2.5, 1.5, 0.5], ["windows", "face", "audio"])
    strip.set_ylim(0, 3)
    strip.set_xlim(0, dur)
    strip.set_xlabel("time (s)")
    for sp in ("top", "right", "left"):
        strip.spines[sp].set_visible(False)
    strip.tick_params(left=False)

    # thumbnails
    if thumbnails:
        top = axes(y, heights["thumbs"])
        w = tile_in / axes_w * dur
        for tc, img in _thumbs(pred, thumbnails):
            if img is None:
                top.add_patch(plt.Rectangle((tc - w / 2, 0.04), w, 0.92, color="#bdbdbd"))
                top.text(tc, 0.5, "no face", ha="center", va="center", fontsize=8, color="#424242")
            else:
                top.imshow(img, extent=(tc - w / 2, tc + w / 2, 0.04, 0.96), aspect="auto", zorder=2)
        top.set_xlim(0, dur)
        top.set_ylim(0, 1)
        top.axis("off")

    verdict = "no prediction" if pred.scores is None else _verdict(pred.scores, spec)
    flagged = sum(not w.predicted for w in pred.windows)
    fig.text(LEFT, 1 - 0.22 / total, f"{Path(pred.path).name}: {verdict}", fontsize=13, weight="bold", va="center")
    fig.text(
        LEFT,
        1 - 0.45 / total,
        f"{dur:.1f} s, {len(pred.windows)} windows ({flagged} without prediction) "
        f"· model {Path(spec.source).name} ({spec.size})",
        fontsize=9,
        color="#555",
        va="center",
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _verdict(scores: np.ndarray, spec: ModelSpec) -> str:
    if spec.task == "regression":
        return ", ".join(f"{n} {v:+.2f}" for n, v in zip(spec.outputs, scores, strict=True))
    best = int(np.argmax(scores))
    return f"{spec.outputs[best]} ({scores[best]:.0%})"
