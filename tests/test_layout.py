"""The boundaries between the folders, read from the source (``ast``), nothing imported:

- no module under ``pipelines/`` imports ``crawler``, Scrapy, Twisted, scrapy-redis or itemadapter
  (the worker processes and the archivist commands run ``pipelines/`` without them);
- the layers of ``pipelines/``, lower first: ``article`` and ``runtime`` import nothing of
  ``pipelines/`` outside themselves; ``stages`` imports ``article``, ``runtime``; ``archive`` those and
  ``stages``; each tool (``tools/<name>``) all of these, never another tool;
- no import cycle among the modules of ``crawler/`` and ``pipelines/``.

Every ``import`` statement counts, those inside functions too (a lazy import still ties two modules),
except those under ``if TYPE_CHECKING:``, which never run. Class paths named in strings (Scrapy
settings, ``PAGE_WORKER``) are not imports and are not followed. Each rule is also run on a small
tree under tests/fixtures/layout/ that breaks it, so a rule that can no longer fail is noticed.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from tests.conftest import FIXTURES, REPO

PACKAGES = ("crawler", "pipelines")
NOT_IN_PIPELINES = ("crawler", "scrapy", "twisted", "scrapy_redis", "itemadapter")

# Each part of pipelines/ and the parts it may import besides itself (each tool is a part of its own).
MAY_IMPORT = {
    "pipelines": (),
    "pipelines.article": (),
    "pipelines.runtime": (),
    "pipelines.stages": ("pipelines.article", "pipelines.runtime"),
    "pipelines.archive": ("pipelines.article", "pipelines.runtime", "pipelines.stages"),
    "pipelines.tools": ("pipelines.article", "pipelines.runtime", "pipelines.stages", "pipelines.archive"),
}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # our module it names (or the one holding the name), else the module as written
    where: str  # path:line, for the message


def modules(root: Path) -> dict[str, Path]:
    """Every module of our packages under ``root``, by its dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _runs(tree: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``tree`` except the bodies of ``if TYPE_CHECKING:`` (their ``else`` runs)."""
    for node in ast.iter_child_nodes(tree):
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test).split("."):
            for branch in node.orelse:
                yield branch
                yield from _runs(branch)
        else:
            yield from _runs(node)


def imports(root: Path) -> list[Import]:
    """Every import of every module under ``root``. ``from a import b`` names ``a.b`` when that is
    one of our modules, else the module of ours holding ``b``; outside our packages, ``a``."""
    known = modules(root)

    def ours(name: str) -> str:
        while name not in known and "." in name:  # a name inside a module, or a module not there
            name = name.rpartition(".")[0]
        return name

    found = []
    for importer, path in known.items():
        where = path.relative_to(root).as_posix()
        package = (importer if path.name == "__init__.py" else importer.rpartition(".")[0]).split(".")
        for node in _runs(ast.parse(path.read_bytes(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [(alias.name, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                above = package[: len(package) - node.level + 1] if node.level else []
                base = ".".join([*above, *filter(None, [node.module])])
                names = [(f"{base}.{alias.name}", base) for alias in node.names]
            else:
                continue
            for name, module in names:
                imported = ours(name) if name.partition(".")[0] in PACKAGES else module
                if imported != importer:
                    found.append(Import(importer, imported, f"{where}:{node.lineno}"))
    return found


def foreign_imports(root: Path) -> list[str]:
    """Imports of ``NOT_IN_PIPELINES`` by modules of ``pipelines/``."""
    return [
        f"{i.where}: {i.importer} imports {i.imported}"
        for i in imports(root)
        if i.importer.partition(".")[0] == "pipelines" and i.imported.partition(".")[0] in NOT_IN_PIPELINES
    ]


def _layer(module: str) -> str:
    return max((layer for layer in MAY_IMPORT if f"{module}.".startswith(f"{layer}.")), key=len)


def _part(module: str) -> str:
    """The layer of ``module``, or for a tool the tool: ``pipelines.tools.verify``."""
    layer = _layer(module)
    return ".".join(module.split(".")[:3]) if layer == "pipelines.tools" else layer


def layer_breaches(root: Path) -> list[str]:
    """Imports inside ``pipelines/`` that go to a layer above, or from one tool to another."""
    return [
        f"{i.where}: {i.importer} imports {i.imported}"
        for i in imports(root)
        if i.importer.partition(".")[0] == i.imported.partition(".")[0] == "pipelines"
        and _part(i.imported) != _part(i.importer)
        and _layer(i.imported) not in MAY_IMPORT[_layer(i.importer)]
    ]


def cycles(root: Path) -> list[str]:
    """The import cycles among our modules: from each module on one (and on none shown yet), the
    shortest way back to it, with the line of each import."""
    edges: dict[str, dict[str, str]] = {module: {} for module in modules(root)}
    for i in imports(root):
        if i.imported in edges:
            edges[i.importer].setdefault(i.imported, i.where)
    found, shown = [], set()
    for start in sorted(edges):
        if start in shown:
            continue
        ways, queue = {start: [start]}, deque([start])
        while queue and start not in edges[queue[0]]:
            for target in sorted(edges[queue[0]]):
                if target not in ways:
                    ways[target] = [*ways[queue[0]], target]
                    queue.append(target)
            queue.popleft()
        if queue:
            cycle = [*ways[queue[0]], start]
            shown.update(cycle)
            lines = ", ".join(edges[a][b] for a, b in pairwise(cycle))
            found.append(f"{' -> '.join(cycle)} ({lines})")
    return found


def test_nothing_in_pipelines_imports_crawler_nor_scrapy():
    assert foreign_imports(REPO) == []


def test_each_layer_of_pipelines_imports_only_those_below_it():
    assert layer_breaches(REPO) == []


def test_no_import_cycle():
    assert cycles(REPO) == []


# Breaks each rule once; the imports that keep the rules must not be reported (an archive module
# importing a stage, a tool its own module, crawler importing pipelines, a relative import, a cycle
# closed only under ``if TYPE_CHECKING:``).
BROKEN = FIXTURES / "layout"


def test_a_pipelines_module_importing_crawler_or_scrapy_is_reported():
    assert foreign_imports(BROKEN) == [
        "pipelines/runtime/clock.py:3: pipelines.runtime.clock imports twisted.internet",
        "pipelines/stages/fetch.py:4: pipelines.stages.fetch imports scrapy.http",
        "pipelines/stages/fetch.py:6: pipelines.stages.fetch imports crawler.shared.state",
    ]


def test_an_import_of_a_higher_layer_or_another_tool_is_reported():
    assert layer_breaches(BROKEN) == [
        "pipelines/archive/index.py:7: pipelines.archive.index imports pipelines.tools.verify",
        "pipelines/article.py:3: pipelines.article imports pipelines.runtime.clock",
        "pipelines/runtime/clock.py:7: pipelines.runtime.clock imports pipelines.stages.tokens",
        "pipelines/stages/fetch.py:13: pipelines.stages.fetch imports pipelines.archive.index",
        "pipelines/tools/verify/__init__.py:4: pipelines.tools.verify imports pipelines.tools.pull",
    ]


def test_an_import_cycle_is_reported_with_its_lines():
    assert cycles(BROKEN) == [
        "crawler.cli -> crawler.shared.state -> crawler.cli (crawler/cli.py:3, crawler/shared/state.py:6)",
    ]
