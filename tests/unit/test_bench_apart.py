"""The bench stands apart from the product: the product never imports it, nor runs its SQL.

Only the CLI's ``bench`` command may reach the bench (lazily), and the bench
may use the product but never the CLI, so no import cycle can come back.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import eventflo
from eventflo import bench, sql

PACKAGE = Path(eventflo.__file__).parent
BLOCK_NAME = re.compile(r"^-- name: (\w+)$", re.MULTILINE)


def _module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path, package_dir: Path = PACKAGE) -> Iterator[str]:
    """Every module an ``import`` or ``from … import`` in ``path`` may name, made absolute.

    ``from eventflo import bench`` yields both ``eventflo`` and ``eventflo.bench``,
    since the imported name may be a module.
    """
    module = _module_name(path, package_dir)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _names(module: str, target: str) -> bool:
    return module == target or module.startswith(target + ".")


def _sources(*, inside: str | None = None) -> list[Path]:
    root = PACKAGE / inside if inside else PACKAGE
    return sorted(root.rglob("*.py"))


def _is_product(path: Path) -> bool:
    first = path.relative_to(PACKAGE).parts[0]
    return first != "bench" and not first.startswith("cli")


def test_no_product_module_imports_the_bench():
    product = [path for path in _sources() if _is_product(path)]
    assert PACKAGE / "serving.py" in product and PACKAGE / "worker.py" in product

    offenders = {
        _module_name(path): sorted(
            m for m in _imported_modules(path) if _names(m, "eventflo.bench")
        )
        for path in product
    }

    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_bench_does_not_import_the_cli():
    offenders = {
        _module_name(path): sorted(m for m in _imported_modules(path) if _names(m, "eventflo.cli"))
        for path in _sources(inside="bench")
    }

    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_import_walk_sees_every_spelling_of_an_import(tmp_path):
    """The checks above would pass vacuously if the walk missed a form of import."""
    spellings = {
        "a.py": "import eventflo.bench.drain\n",
        "b.py": "from eventflo import bench\n",
        "c.py": "from eventflo.bench import report\n",
        "d.py": "from . import bench\n",
        "e.py": "def f():\n    from .bench.report import render\n",
        "sub/__init__.py": "from .. import bench\n",
    }
    for name, text in spellings.items():
        path = tmp_path / "eventflo" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    for name in spellings:
        found = list(_imported_modules(tmp_path / "eventflo" / name, tmp_path / "eventflo"))
        assert any(_names(m, "eventflo.bench") for m in found), (name, found)


def test_the_bench_queries_live_with_the_bench_not_in_the_product_sql():
    bench_file = Path(bench.__file__).with_name("queries.sql")
    bench_names = set(BLOCK_NAME.findall(bench_file.read_text(encoding="utf-8")))
    product_files = sorted(Path(sql.__file__).parent.glob("*.sql"))
    product_names = {
        name: path.name
        for path in product_files
        for name in BLOCK_NAME.findall(path.read_text(encoding="utf-8"))
    }

    assert bench_names == set(bench.QUERIES) and "bare_insert_event" in bench_names
    assert "bench.sql" not in {path.name for path in product_files}
    assert {name: product_names[name] for name in bench_names & set(product_names)} == {}
