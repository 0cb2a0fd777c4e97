"""`avf report ...`: comparisons people read."""

from __future__ import annotations

from pathlib import Path

import typer

from avf.cli import common

app = typer.Typer(no_args_is_help=True)


@app.command("ablations")
def ablations(
    experiments: list[str] = typer.Argument(None, help="DVC experiment names (default: all experiments)."),
    baseline: str | None = typer.Option(None, "--baseline", help="Experiment or branch to compare against."),
    out: Path = typer.Option(Path("reports/ablations"), "--out"),
    project: Path = typer.Option(Path("."), "--project", help="The DVC project folder."),
    all_commits: bool = typer.Option(
        False, "--all-commits", "-A", help="Also find experiments based on other commits than HEAD."
    ),
) -> None:
    """Compare DVC experiments: differing params, metric deltas, training curves (Markdown + HTML)."""
    from avf.report.ablations import write_report

    try:
        paths = write_report(project, out, experiments or [], baseline, all_commits=all_commits)
    except (ValueError, RuntimeError) as e:
        common.fail(str(e), common.EXIT_USAGE)
    except FileNotFoundError as e:
        common.fail(str(e), common.EXIT_MISSING)
    common.console.print(f"wrote {paths['md']} and {paths['html']}")


@app.command("folds")
def folds(
    experiments: list[str] = typer.Argument(..., help="DVC experiments or branches, one per data.split.fold."),
    out: Path = typer.Option(Path("reports/folds"), "--out"),
    project: Path = typer.Option(Path("."), "--project", help="The DVC project folder."),
    prefix: str = typer.Option(
        "test/", "--metrics", help="Metrics of reports/eval/metrics.json: test/ (selected model) or last/test/."
    ),
    all_commits: bool = typer.Option(
        False, "--all-commits", "-A", help="Also find experiments based on other commits than HEAD."
    ),
) -> None:
    """Cross-validation summary: test metrics per fold, the mean over folds and pooled over all clips."""
    from avf.report.folds import to_markdown, write_report

    try:
        paths, summary = write_report(project, out, experiments, prefix=prefix, all_commits=all_commits)
    except (ValueError, RuntimeError) as e:
        common.fail(str(e), common.EXIT_USAGE)
    except FileNotFoundError as e:
        common.fail(str(e), common.EXIT_MISSING)
    common.console.print(to_markdown(summary), markup=False, highlight=False)
    common.console.print(f"wrote {paths['md']} and {paths['json']}")
