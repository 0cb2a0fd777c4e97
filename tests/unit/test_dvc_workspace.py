"""Every dependency of every stage exists in a fresh DVC experiment workspace.

``dvc exp run --queue`` and ``--temp`` run in a copy of the repository under ``.dvc/tmp/exps/`` that holds
the git-tracked files and the DVC outputs, nothing else. A dependency that is neither (the face model
files, extracted by ``make setup`` and git-ignored, were one) makes every queued experiment fail at the
first stage that lists it. Read with DVC's own parser, so ``foreach`` and ``${...}`` are expanded.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from dvc.repo import Repo

ROOT = Path(__file__).resolve().parents[2]


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def test_every_stage_dependency_is_in_git_or_a_dvc_output() -> None:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    in_git = set(listed.splitlines())
    with Repo(str(ROOT)) as repo:
        stages = list(repo.index.stages)
        outs = [o.def_path for s in stages for o in s.outs]
        missing = [
            f"{s.addressing}: {d.def_path}"
            for s in stages
            for d in s.deps
            if d.def_path not in in_git
            and not any(_inside(f, d.def_path) for f in in_git)  # a folder of tracked files
            and not any(_inside(d.def_path, o) or _inside(o, d.def_path) for o in outs)  # an output, in or around
        ]
    assert missing == [], f"not in git and not produced by a stage, so absent from experiment workspaces: {missing}"


def test_the_faces_stage_tracks_the_pinned_models_by_their_checksums() -> None:
    with Repo(str(ROOT)) as repo:
        faces = [s for s in repo.index.stages if s.addressing.startswith("faces@")]
    assert faces and all("models/assets/SHA256SUMS" in {d.def_path for d in s.deps} for s in faces)


def test_every_stage_but_register_is_kept_by_the_run_cache() -> None:
    """DVC saves a stage to its run-cache only when no plain output is ``cache: false`` (metrics and plots may
    be): with ``mlflow_run.json`` as such an output, every DVC experiment trained stages 1 and 2 again, even
    where another experiment had trained them with the same inputs and params (an ablation batch of 21
    experiments would train them 21 times instead of 4). ``register`` is left out on purpose: restoring it
    from the cache would skip registering the model in the MLflow server."""
    with Repo(str(ROOT)) as repo:
        blocked = sorted(
            s.addressing
            for s in repo.index.stages
            if any(not o.use_cache for o in s.outs if not (o.is_metric or o.is_plot))  # DVC's own rule
        )
    assert blocked == ["register"]


def test_python_bytecode_in_a_dependency_folder_changes_no_stage(tmp_path: Path) -> None:
    """Stages depend on whole source folders (``avf/config``, ``avf/demo``, ...), where Python writes
    ``__pycache__`` on import unless ``PYTHONDONTWRITEBYTECODE`` is set. Hashed with them, any import made the
    data stages out of date against the committed ``dvc.lock``, and ``dvc repro`` ran them again."""
    for name in ("dvc.yaml", "dvc.lock", "params.yaml", ".dvcignore"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / ".dvc", tmp_path / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    shutil.copytree(ROOT / "avf", tmp_path / "avf", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)

    def changed_source_folders() -> dict[str, list[str]]:
        with Repo(str(tmp_path)) as repo:
            return {
                s.addressing: sorted(d.def_path for d in s.deps if (tmp_path / d.def_path).is_dir() and d.status())
                for s in repo.index.stages
                if any(d.def_path.startswith("avf/") and (tmp_path / d.def_path).is_dir() for d in s.deps)
            }

    before = changed_source_folders()  # against the lock: empty where the sources are committed and relocked
    assert len(before) > 5, before
    for folder in [p for p in (tmp_path / "avf").rglob("*") if p.is_dir()]:
        (folder / "__pycache__").mkdir()
        (folder / "__pycache__" / "module.cpython-311.pyc").write_bytes(b"\x00bytecode")
        (folder / "__pycache__" / "module.lock").write_bytes(b"")  # only the folder rule ignores this one
        (folder / "module.pyc").write_bytes(b"\x00bytecode")
    assert changed_source_folders() == before
