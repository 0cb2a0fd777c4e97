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


@app.command("compare")
def compare(
    arm: list[str] = typer.Option(
        None,
        "--arm",
        help="NAME=EXP[,EXP...]: an arm's DVC experiments, one per fold and seed. The first is the baseline.",
    ),
    batch: Path | None = typer.Option(None, "--batch", help="Take the arms from this `avf exp queue` batch file."),
    batch_arms: str | None = typer.Option(None, "--arms", help="With --batch: only these arms (comma-separated)."),
    out: Path = typer.Option(Path("reports/compare"), "--out"),
    project: Path = typer.Option(Path("."), "--project", help="The DVC project folder."),
    boot: int = typer.Option(2000, "--boot", min=100, help="Bootstrap replicates."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    all_commits: bool = typer.Option(
        False, "--all-commits", "-A", help="Also find experiments based on other commits than HEAD."
    ),
    log_mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log the report as an MLflow run."),
) -> None:
    """Test UAR / WAR of each arm with 95% intervals, and each arm's paired difference from the baseline."""
    from avf import tracking
    from avf.report.batch import arms_of_batch, load_batch
    from avf.report.compare import load_arms, parse_arms, summarize, to_markdown, write_report

    try:
        if (batch is None) == (not arm):
            raise ValueError("give the arms either with --arm (twice or more) or with --batch")
        arms = arms_of_batch(load_batch(batch), batch_arms) if batch is not None else parse_arms(arm)
        summary = summarize(load_arms(project, arms, all_commits=all_commits), n_boot=boot, seed=seed)
    except (ValueError, RuntimeError) as e:
        common.fail(str(e), common.EXIT_USAGE)
    except FileNotFoundError as e:
        common.fail(str(e), common.EXIT_MISSING)
    paths = write_report(out, summary, arms)
    common.console.print(to_markdown(summary), markup=False, highlight=False, soft_wrap=True)
    common.console.print(f"wrote {paths['md']}, {paths['html']} and {paths['png']}")
    if not log_mlflow:
        return
    common.quiet_stage("report")  # MLflow's own logging goes to runs/logs/report.log
    params = common.load()
    cells = {**summary["arms"], **{f"{a}-minus-{summary['baseline']}": c for a, c in summary["differences"].items()}}
    metrics = {
        f"{name}/{m}{end}": getattr(c[m], field)
        for name, c in cells.items()
        for m in ("uar", "war")
        for end, field in (("", "value"), ("_low", "low"), ("_high", "high"))
    }
    try:
        with tracking.stage_run(
            params, stage="report", sections=(), experiment=f"{params.tracking.experiment_prefix}/reports",
            run_name=f"compare {' vs '.join(arms)}",
        ) as run:  # fmt: skip
            run.log_metrics(metrics, step=0)
            for path in paths.values():
                run.log_artifact(path, "compare")
    except tracking.TrackingUnavailableError as e:
        common.fail(f"report written, but not logged to MLflow: {e}", common.EXIT_MISSING)
    common.console.print(f"logged to MLflow: run {run.run_id}")


@app.command("readme")
def readme(
    path: Path = typer.Option(Path("README.md"), "--readme", help="The file with avf-report blocks."),
    project: Path = typer.Option(Path("."), "--project", help="The folder whose reports/ the tables come from."),
    check: bool = typer.Option(False, "--check", help="Change nothing; exit 1 when a table differs from the reports."),
) -> None:
    """Write the README's results tables from the committed report files (demo stages, ablation batch)."""
    from avf.report.readme import stale_blocks, update

    try:
        stale = stale_blocks(path.read_text(), project) if check else update(path, project)
    except FileNotFoundError as e:
        common.fail(str(e), common.EXIT_MISSING)
    except ValueError as e:
        common.fail(str(e), common.EXIT_USAGE)
    if check and stale:
        common.fail(f"{path}: the tables {', '.join(stale)} differ from the reports; run `avf report readme`")
    common.console.print(f"{path}: {'up to date' if not stale else 'rewrote ' + ', '.join(stale)}", highlight=False)
