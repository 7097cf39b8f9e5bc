"""The rules' digest in every row's extractor_version: it follows the rules and nothing else."""

from __future__ import annotations

import ast
import shutil
from importlib.metadata import version

from pipelines.stages.extraction.provenance import (
    EXTRACTOR_VERSION,
    RULES_DIGEST,
    STAGES,
    newsarchive_version,
    rule_files,
    rules_digest,
)
from pipelines.stages.page import PageAnalyser
from tests.conftest import FIXTURES, fetched_article


def copy_of_stages(tmp_path):
    """The stage files as installed elsewhere: another path, other file times, no bytecode."""
    copy = tmp_path / "stages"
    shutil.copytree(STAGES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_the_digest_is_the_same_computed_again_and_from_a_copy_elsewhere(tmp_path):
    copy = copy_of_stages(tmp_path)
    (copy / "extraction" / "__pycache__").mkdir()
    (copy / "extraction" / "__pycache__" / "furniture.cpython-311.pyc").write_bytes(b"bytecode")
    assert rules_digest() == rules_digest() == RULES_DIGEST == rules_digest(copy)
    crlf = copy / "extraction" / "furniture.py"
    crlf.write_bytes(crlf.read_bytes().replace(b"\n", b"\r\n"))  # a checkout on Windows
    assert rules_digest(copy) == RULES_DIGEST


def test_the_digest_changes_with_one_byte_of_a_rule_or_a_new_data_file(tmp_path):
    copy = copy_of_stages(tmp_path)
    rule = copy / "extraction" / "furniture.py"
    data = bytearray(rule.read_bytes())
    data[len(data) // 2] ^= 1
    rule.write_bytes(bytes(data))
    edited = rules_digest(copy)
    assert edited != RULES_DIGEST
    shutil.copy(FIXTURES / "furniture.toml", copy / "extraction" / "furniture.toml")
    assert rules_digest(copy) not in (edited, RULES_DIGEST)


def test_a_module_outside_the_rules_leaves_the_digest_as_it_is(tmp_path):
    copy = copy_of_stages(tmp_path)
    (copy / "dedup.py").write_text("# not a rule of the text\n", encoding="utf-8")
    assert rules_digest(copy) == RULES_DIGEST


def stage_imports(path) -> set[str]:
    """The ``pipelines.stages`` modules the source at ``path`` imports, at the top or in a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("pipelines.stages.")}


def test_every_stage_module_the_page_stage_runs_is_a_rule():
    """A module the page stage comes to import, and the digest did not cover, would change rows
    unseen."""
    covered = set(rule_files())
    seen, todo = set(), ["pipelines.stages.page"]
    while todo:
        module = todo.pop()
        path = STAGES.parent.parent / (module.replace(".", "/") + ".py")
        if module in seen or not path.is_file():  # a package's name, its modules imported by name
            continue
        seen.add(module)
        assert path.resolve() in covered, module
        todo += stage_imports(path)
    assert {"pipelines.stages.extraction.extractor", "pipelines.stages.language"} <= seen


def test_every_row_names_newsarchive_its_rules_and_the_libraries():
    assert newsarchive_version() == f"newsarchive {version('newsarchive')} rules {RULES_DIGEST}"
    libraries = f"trafilatura {version('trafilatura')}, readability-lxml {version('readability-lxml')}"
    assert EXTRACTOR_VERSION.split(", ", 1) == [newsarchive_version(), libraries]
    item = fetched_article(body=(FIXTURES / "pages" / "editor_lines.html").read_bytes())
    assert PageAnalyser()(item).extractor_version == EXTRACTOR_VERSION
