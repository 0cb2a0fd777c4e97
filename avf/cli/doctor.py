"""`avf doctor`: is this installation healthy?"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shutil
from pathlib import Path

from rich.table import Table

from avf.cli import common

PACKAGES = (
    "torch",
    "torchaudio",
    "torchvision",
    "timm",
    "av",
    "mediapipe",
    "opencv-contrib-python",
    "webdataset",
    "ray",
    "mlflow",
    "prefect",
    "dvc",
    "pydantic",
    "typer",
)


def collect(params_path: Path) -> list[tuple[str, str, bool]]:
    """Return ``(check, detail, ok)`` rows; importable by tests and by ``avf doctor``."""
    rows: list[tuple[str, str, bool]] = []
    rows.append(("python", platform.python_version(), platform.python_version().startswith("3.11")))
    for pkg in PACKAGES:
        try:
            rows.append((pkg, md.version(pkg), True))
        except md.PackageNotFoundError:
            rows.append((pkg, "not installed", False))

    import torch

    from avf.utils.cpu import bf16_units

    rows.append(("cpu", f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}", True))
    units = bf16_units()
    rows.append(
        (
            "cpu bf16",
            f"matrix units: {', '.join(units)} (amp: auto picks bf16 here; predict --precision bf16 is fast)"
            if units
            else "no bf16 matrix units: amp: auto picks fp32 here (bf16 would be emulated, slower)",
            True,
        )
    )
    from avf.models.packed_linear import packing_available

    rows.append(
        (
            "cpu inference",
            "fp32 linears on oneDNN's packed weights (evaluation, avf predict)"
            if packing_available()
            else "no oneDNN in this PyTorch: fp32 linears on its default BLAS",
            True,
        )
    )
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        bf16 = torch.cuda.is_bf16_supported()
        rows.append(("gpu", f"{torch.cuda.device_count()} x {name} (bf16 {'yes' if bf16 else 'no'})", True))
    else:
        rows.append(("gpu", "none (CPU training; GPU tests are skipped)", True))

    import av

    codecs = {c: c in av.codecs_available for c in ("libx264", "h264", "aac")}
    rows.append(
        ("ffmpeg (PyAV)", f"libav {av.library_versions.get('libavcodec')}, codecs {codecs}", all(codecs.values()))
    )

    from avf.assets import ASSET_DIR, verify

    problems = verify()
    rows.append(
        ("face models", f"{ASSET_DIR} " + ("verified (sha256)" if not problems else str(problems)), not problems)
    )

    from avf.config import ParamsError, load_params

    try:
        params = load_params(params_path)
        rows.append(("params", f"{params_path} valid (model {params.model.size})", True))
        uri = os.environ.get("MLFLOW_TRACKING_URI", params.tracking.uri)
        ray_addr = os.environ.get("RAY_ADDRESS") or params.ray.address or "local (started on demand)"
    except ParamsError as e:
        rows.append(("params", str(e).splitlines()[0], False))
        uri = os.environ.get("MLFLOW_TRACKING_URI", "?")
        ray_addr = os.environ.get("RAY_ADDRESS", "?")
    rows.append(("tracking uri", uri, True))
    rows.append(("ray address", ray_addr, True))

    free_gb = shutil.disk_usage(Path.cwd()).free / 2**30
    rows.append(("free disk", f"{free_gb:.1f} GiB in {Path.cwd()}", free_gb > 2))
    return rows


def doctor() -> None:
    rows = collect(common.STATE.params_path)
    table = Table(title="avf doctor")
    table.add_column("check")
    table.add_column("detail", overflow="fold")
    table.add_column("ok")
    for name, detail, ok in rows:
        table.add_row(name, detail, "[green]ok[/]" if ok else "[red]FAIL[/]")
    common.console.print(table)
    bad = [name for name, _, ok in rows if not ok]
    if bad:
        common.fail(f"unhealthy: {', '.join(bad)}", common.EXIT_MISSING)
    common.console.print("[green]healthy[/]")
