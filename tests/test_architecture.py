"""The layering of ARCHITECTURE.md, checked on the source: the core imports no front end."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "cybershuttle"
#: Top-level packages only a front end may import (the magics, the server extension and their hosts).
FRONT_ENDS = ("cybershuttle_magic", "cybershuttle_server", "jupyterlab_cybershuttle", "IPython", "tornado",
              "jupyter_server")
#: Files under cybershuttle/ that are a front end themselves: the CLI (and `python -m cybershuttle`).
CLI = CORE / "cli"
CLI_FILES = (CORE / "__main__.py",)
#: The two places the core uses IPython as a library, not as a front end (ARCHITECTURE.md names them):
#: a parser of cell text, and the cell events of the kernel a recorded session was started in.
ALLOWED = {
    ("cybershuttle/template/notebook.py", "IPython.core.inputtransformer2"),
    ("cybershuttle/template/notebook.py", "IPython.core.inputtransformer2.TransformerManager"),
    ("cybershuttle/session/python.py", "IPython"),
    ("cybershuttle/session/python.py", "IPython.get_ipython"),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative ones resolved, wherever they stand."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # `from . import cli` names the module in the alias
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def offending(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    rel = str(path.relative_to(REPO))
    return [f"{rel}:{line} imports {name}" for line, name in imported_modules(path)
            if any(name == f or name.startswith(f + ".") for f in forbidden) and (rel, name) not in ALLOWED]


def core_files() -> list[Path]:
    return [p for p in sorted(CORE.rglob("*.py")) if CLI not in p.parents and p not in CLI_FILES]


def test_the_core_imports_no_front_end():
    assert len(core_files()) > 50  # the walk really reads the core
    problems = [msg for path in core_files() for msg in offending(path, FRONT_ENDS + ("cybershuttle.cli",))]
    assert problems == [], "the core must not import a front end (see ARCHITECTURE.md):\n" + "\n".join(problems)


def test_the_cli_imports_no_other_front_end():
    problems = [msg for path in sorted(CLI.rglob("*.py")) for msg in offending(path, FRONT_ENDS)]
    assert problems == [], "\n".join(problems)


def test_the_check_sees_a_front_end_import_wherever_it_stands(tmp_path, monkeypatch):
    """The walk finds imports inside functions and relative ones, so a lazy import cannot slip through."""
    source = ("def f():\n    from IPython.display import display\n"
              "def g():\n    import cybershuttle_magic.terminal\n"
              "from .cli import main\n")
    tree_file = tmp_path / "cybershuttle" / "probe.py"
    tree_file.parent.mkdir()
    tree_file.write_text(source)
    monkeypatch.setattr("test_architecture.REPO", tmp_path)
    found = offending(tree_file, FRONT_ENDS + ("cybershuttle.cli",))
    assert {m.split(" imports ")[1] for m in found} == {"IPython.display", "IPython.display.display",
                                                        "cybershuttle_magic.terminal", "cybershuttle.cli",
                                                        "cybershuttle.cli.main"}
