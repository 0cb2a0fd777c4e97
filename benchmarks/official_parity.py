"""``python -m benchmarks.official_parity``: do official checkpoints give the same logits in avf?

For each size, the official fine-tuning model (XuecWu/AVF-MAE, from a scratch checkout named by
``--official-dir`` / ``AVF_OFFICIAL_DIR``; see :mod:`benchmarks.official`) is built with the official
scripts' arguments and seeded random weights (the official initialisation),
saved as the official trainer saves it (``{"model": state_dict}`` in a ``.pth``), converted by
:func:`avf.artifacts.official.load_official`, and both models run in eval mode on the same clips
(``video [B,3,16,160,160]``, ``audio [B,1,256,128]``). Prints the relative difference of the logits,
``max |ours - official| / max |official|``, and exits 1 when it is not below ``--tolerance`` (1e-4).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import official  # noqa: E402
from benchmarks.cases import clip_inputs  # noqa: E402


def parity(off_dir: Path, size: str, batch: int = 2, seed: int = 0) -> dict[str, float]:
    """Logit agreement of the official model and its avf conversion for one size."""
    from avf.artifacts.official import load_official

    off = official.load(off_dir)
    torch.manual_seed(seed)
    theirs = official.build_finetune(off, size, drop_path=0.0).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint-best.pth"
        torch.save({"model": theirs.state_dict()}, path)
        ours = load_official(path)
    video, audio = clip_inputs(batch, torch.device("cpu"), seed=seed + 1)
    with torch.no_grad():
        ref = theirs(video, audio).float()
        got = ours(video, audio).float()
    if got.shape != ref.shape:
        raise AssertionError(f"{size}: logits shape {tuple(got.shape)} != official {tuple(ref.shape)}")
    return {
        "rel_diff": float((got - ref).abs().max() / ref.abs().max()),
        "max_abs_logit": float(ref.abs().max()),
        "same_argmax": float((got.argmax(-1) == ref.argmax(-1)).float().mean()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.official_parity", description=__doc__.split("\n\n")[0])
    p.add_argument("--official-dir", default=None, help=f"scratch checkout of XuecWu/AVF-MAE (or ${official.ENV})")
    p.add_argument("--sizes", default="base", help="comma-separated: base, large, huge")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--tolerance", type=float, default=1e-4)
    a = p.parse_args(argv)
    off_dir = official.official_dir(a.official_dir)
    if off_dir is None:
        print(official.why_skipped(a.official_dir))
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    ok = True
    print(f"{'size':6} {'rel. diff':>10} {'max |logit|':>12} {'same argmax':>12}")
    for size in a.sizes.split(","):
        r = parity(off_dir, size, a.batch)
        ok &= r["rel_diff"] < a.tolerance
        print(f"{size:6} {r['rel_diff']:10.2e} {r['max_abs_logit']:12.3f} {r['same_argmax']:12.0%}")
    print("parity: " + ("ok" if ok else f"FAILED (tolerance {a.tolerance:g})"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
