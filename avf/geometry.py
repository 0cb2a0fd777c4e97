"""The input geometry every AVF-MAE++ size shares (spec sections 2-4): token grids and LG regions.

Video: 16 frames x 160 x 160, tubelets 2 x 16 x 16 -> an 8 x 10 x 10 (t, h, w) token grid, grouped into
LG regions of (2, 5, 10) tokens -> 8 regions of 100. Audio: a 256 x 128 fbank, patches 16 x 16 -> a
16 x 8 (time, freq) grid, regions of (4, 4) -> 8 regions of 16. The running-cell decoder mask works on
2 x 2 cells, so its ratio is a multiple of 1/4.
"""

from __future__ import annotations

TUBELET = (2, 16, 16)  # frames x pixels x pixels per video token
VIDEO_GRID = (8, 10, 10)
AUDIO_GRID = (16, 8)
VIDEO_REGION = (2, 5, 10)
AUDIO_REGION = (4, 4)
NUM_REGIONS = 8
RUNNING_CELL_RATIOS = (0.0, 0.25, 0.5, 0.75)


def hidden_tokens(ratio: float, n: int, what: str) -> int:
    """Tokens a mask ``ratio`` hides out of ``n``; a fractional count is an error, not a floor."""
    hidden = round(ratio * n)
    if abs(ratio * n - hidden) > 1e-6:
        raise ValueError(
            f"masking.{what}={ratio} hides {ratio * n:.4f} of {n} tokens; choose a ratio that gives a whole "
            f"number (multiples of {1 / n:g})"
        )
    return hidden
