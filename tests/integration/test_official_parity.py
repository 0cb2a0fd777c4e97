"""Converted official checkpoints give the official logits (needs a scratch checkout of the official code).

The official code is never in this repository: set ``AVF_OFFICIAL_DIR`` to a checkout of XuecWu/AVF-MAE
(commit a31ebf8, see ``benchmarks/official.py``) to run this test; without one it is skipped with that
reason. ``python -m benchmarks.official_parity --sizes base,large,huge`` prints the same check per size.
"""

from __future__ import annotations

import pytest

from benchmarks import official
from benchmarks.official_parity import parity

OFFICIAL = official.official_dir()


@pytest.mark.slow
@pytest.mark.skipif(OFFICIAL is None, reason=official.why_skipped())
def test_converted_official_finetune_model_gives_the_official_logits() -> None:
    assert OFFICIAL is not None
    r = parity(OFFICIAL, "base", batch=2)
    assert r["rel_diff"] < 1e-4, r
    assert r["same_argmax"] == 1.0 and r["max_abs_logit"] > 0.1  # non-trivial logits
