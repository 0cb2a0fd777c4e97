"""MediaPipe face model files: extracted from the mediapipe 0.10.21 wheel on PyPI and checked by sha256.

MediaPipe 1.x ships no ``.tflite`` models and the Tasks API cannot download here, so ``make setup`` runs
``python -m avf.assets`` once: it downloads the pinned wheel with pip (install time, never run time),
extracts the two Apache-2.0 model files (1.5 MB) into ``models/assets/`` and verifies them against
``models/assets/SHA256SUMS``. Nothing in the pipeline downloads anything.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "mediapipe==0.10.21"
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
MEMBERS = {
    "face_detection_short_range.tflite": "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "face_landmark.tflite": "mediapipe/modules/face_landmark/face_landmark.tflite",
}
ASSET_DIR = Path(__file__).resolve().parent.parent / "models" / "assets"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def expected_sums(asset_dir: Path = ASSET_DIR) -> dict[str, str]:
    sums = {}
    for line in (asset_dir / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name] = digest
    return sums


def verify(asset_dir: Path = ASSET_DIR) -> dict[str, str]:
    """Return ``{file: problem}`` for every asset that is missing or has the wrong checksum."""
    problems = {}
    for name, digest in expected_sums(asset_dir).items():
        p = asset_dir / name
        if not p.is_file():
            problems[name] = "missing (run `make setup` or `python -m avf.assets`)"
        elif sha256(p) != digest:
            problems[name] = "sha256 mismatch"
    return problems


def locate(path: str | Path, base_dir: str | Path | None = None) -> Path:
    """A face model file: absolute, under ``base_dir``, relative to the working directory, or by its name in
    this project's ``models/assets`` (a queued or ``--temp`` DVC experiment runs in a copy of the repository
    that lacks the git-ignored model files). The path as given when it is nowhere."""
    p = Path(path)
    candidates = [p] if p.is_absolute() else [*([Path(base_dir) / p] if base_dir is not None else []), Path.cwd() / p]
    candidates.append(ASSET_DIR / p.name)
    return next((c for c in candidates if c.is_file()), p)


def require(path: str | Path) -> Path:
    """:func:`locate` a face model the faces stage needs; a pinned asset (named in ``SHA256SUMS``) must match it.

    DVC tracks ``models/assets/SHA256SUMS`` rather than the model files (they are not in git), so a pinned
    file that was changed in place would change the crops without DVC knowing: that is an error here.
    Raises ``FileNotFoundError`` (missing) or ``ValueError`` (checksum), naming the file.
    """
    found = locate(path)
    if not found.is_file():
        raise FileNotFoundError(f"{path}: face model file not found (run `make setup` or `python -m avf.assets`)")
    digest = expected_sums().get(found.name)
    if digest is not None and found.resolve().parent == ASSET_DIR.resolve() and sha256(found) != digest:
        raise ValueError(f"{found}: sha256 does not match models/assets/SHA256SUMS (run `python -m avf.assets`)")
    return found


def ensure(asset_dir: Path = ASSET_DIR, cache_dir: Path | None = None) -> None:
    """Extract the model files if any is missing or corrupt; raise ``RuntimeError`` when that fails."""
    if not verify(asset_dir):
        return
    cache_dir = cache_dir or Path.home() / ".cache" / "avf" / "wheels"
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache_dir.glob("mediapipe-0.10.21-cp311-*.whl"))
    wheels = [w for w in wheels if sha256(w) == WHEEL_SHA256]
    if not wheels:
        print(f"avf.assets: downloading {WHEEL} (34 MB) from the package index for its face models", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--python-version",
                    "3.11",
                    "--platform",
                    "manylinux_2_28_x86_64",
                    WHEEL,
                    "-d",
                    tmp,
                ],
                check=True,
            )
            for w in Path(tmp).glob("*.whl"):
                if sha256(w) != WHEEL_SHA256:
                    raise RuntimeError(f"{w.name}: sha256 does not match the pinned {WHEEL_SHA256}")
                target = cache_dir / w.name
                w.replace(target)
                wheels = [target]
    with zipfile.ZipFile(wheels[0]) as zf:
        for name, member in MEMBERS.items():
            data = zf.read(member)
            tmp_path = asset_dir / f".{name}.tmp"
            tmp_path.write_bytes(data)
            tmp_path.replace(asset_dir / name)
    problems = verify(asset_dir)
    if problems:
        raise RuntimeError(f"face model assets failed verification: {problems}")


if __name__ == "__main__":
    ensure()
    print(f"avf.assets: face models verified in {ASSET_DIR}")
