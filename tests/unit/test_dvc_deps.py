"""``dvc.yaml`` lists exactly the code each stage runs, so ``dvc repro`` re-runs what a change touches.

A stage's code is computed, not written by hand: its command (``avf train pretrain ...``) names a CLI
function; the code that function can run is the import closure (grimp's graph, function-level imports
included, plus the ``__init__`` of every package on the way) of

* the module-level imports of that function's CLI module and the imports inside the function and the
  helpers it names there, and
* the module-level imports of ``avf/cli/__init__.py`` (its root callback runs before every command).

The CLI modules of the other commands are left out: ``avf/cli/__init__.py`` imports them only to
register their commands, and their function bodies never run in this stage. The ``avf/`` deps of the
stage must then cover exactly the closure's files: a missing file means a stale result after a change,
an extra one means needless re-runs. A folder dep covers every ``.py`` file under it, so it is only
allowed when all of them are in the closure.
"""

from __future__ import annotations

import ast
import inspect
from functools import cache
from pathlib import Path
from typing import Any

import grimp
import pytest
import typer

import avf.cli
from tests.support.dvc_stages import dvc_stages

ROOT = Path(__file__).resolve().parents[2]


@cache
def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("avf", cache_dir=None)


def _module_file(module: str) -> Path:
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imported(nodes: list[ast.stmt] | list[ast.AST], package: str) -> set[str]:
    """avf modules named by the import statements among ``nodes`` (``from a import b``: ``a.b`` if a module)."""
    modules = _graph().modules
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules)
    return {m for m in found if m in modules}


def _top_level_imports(module: str) -> set[str]:
    tree = ast.parse(_module_file(module).read_text())
    package = module if _module_file(module).name == "__init__.py" else module.rpartition(".")[0]
    return _imported(list(tree.body), package)


def _closure(roots: set[str]) -> set[str]:
    """``roots`` and everything they can import; CLI modules contribute only their module-level imports."""
    graph, seen, todo = _graph(), set(), set(roots)
    while todo:
        module = todo.pop()
        if module in seen or module == "avf.cli":  # the app assembly: it registers commands, runs none
            continue
        seen.add(module)
        cli = module == "avf.cli" or module.startswith("avf.cli.")
        todo |= _top_level_imports(module) if cli else graph.find_modules_directly_imported_by(module)
        parent = module.rpartition(".")[0]
        if parent not in ("", "avf", "avf.cli"):
            todo.add(parent)
    return seen


def _command(words: list[str]) -> Any:
    group: Any = typer.main.get_command(avf.cli.app)
    for word in words:
        group = group.commands[word]
    return inspect.unwrap(group.callback)


def _cli_module_imports(fn: Any) -> set[str]:
    """Imports of ``fn``'s CLI module that ``fn`` can reach: its module-level imports, the imports inside
    ``fn`` and inside the module's functions it names (``_run_stage``), transitively."""
    tree = ast.parse(_module_file(fn.__module__).read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    nodes: list[ast.AST] = [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.ClassDef)]
    seen: set[str] = set()
    todo = [fn.__name__]
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        body = list(ast.walk(functions[name]))
        nodes += body
        todo += [n.id for n in body if isinstance(n, ast.Name)]
    return _imported(nodes, fn.__module__.rpartition(".")[0])


def stage_code(cmd: str) -> set[Path]:
    """The ``avf/`` files the stage command ``cmd`` (``avf <group> <command> ...``) can run."""
    argv = cmd.split()
    assert argv[0] == "avf", cmd
    words = [w for w in argv[1:3] if not w.startswith("-")]
    fn = _command(words)
    roots = _cli_module_imports(fn) | {fn.__module__}
    roots |= {m for m in _top_level_imports("avf.cli") if not m.startswith("avf.cli.") or m == "avf.cli.common"}
    return {_module_file(m).relative_to(ROOT) for m in _closure(roots) if m != "avf"}


def _covered(deps: list[str]) -> tuple[set[Path], list[str]]:
    """Files the ``avf/`` deps cover, and the folder deps that cover files outside ``files``."""
    files: set[Path] = set()
    for dep in deps:
        path = ROOT / dep
        files |= {p.relative_to(ROOT) for p in path.rglob("*.py")} if path.is_dir() else {Path(dep)}
    return files, [d for d in deps if (ROOT / d).is_dir()]


def minimal_deps(files: set[Path]) -> list[str]:
    """The shortest dep list for ``files``: a folder wherever every ``.py`` file under it is in ``files``."""
    out: set[str] = set()
    for f in files:
        chosen = f
        for parent in f.parents:
            if parent == Path(".") or parent == Path("avf"):
                break
            if {p.relative_to(ROOT) for p in (ROOT / parent).rglob("*.py")} <= files:
                chosen = parent
        out.add(str(chosen))
    return sorted(out)


@pytest.mark.parametrize("stage", sorted(dvc_stages()))
def test_the_code_deps_of_each_stage_are_its_import_closure(stage: str) -> None:
    spec = dvc_stages()[stage]
    deps = [d for d in spec.get("deps", []) if str(d).startswith("avf/")]
    needed = stage_code(spec["cmd"])
    covered, folders = _covered(deps)
    wanted = minimal_deps(needed)
    assert covered >= needed, f"{stage}: dvc.yaml misses {sorted(map(str, needed - covered))}; use {wanted}"
    assert covered == needed, (
        f"{stage}: dvc.yaml deps {sorted(map(str, covered - needed))} are not code the stage runs "
        f"(folders: {folders}); use {wanted}"
    )


def test_the_training_stages_do_not_depend_on_face_detection_adapters_or_prediction() -> None:
    for stage in ("pretrain", "intermediate", "finetune", "evaluate"):
        code = {str(p) for p in stage_code(dvc_stages()[stage]["cmd"])}
        leaks = sorted(
            p for p in code if p == "avf/data/face.py" or p.startswith(("avf/data/adapters/", "avf/predict/"))
        )
        assert leaks == [], f"{stage} runs {leaks}"


def test_the_closure_follows_function_level_imports_and_package_inits() -> None:
    """The helper itself: ``avf/data/loader.py`` imports the audio module inside a function."""
    code = {str(p) for p in stage_code(dvc_stages()["pretrain"]["cmd"])}
    assert {"avf/data/loader.py", "avf/data/audio.py", "avf/models/__init__.py", "avf/cli/train.py"} <= code
    assert "avf/cli/predict.py" not in code
