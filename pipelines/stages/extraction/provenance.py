"""What made a row's text: newsarchive's version, a digest of its own rules, the libraries' versions.

Rows extracted before and after a change to newsarchive's rules (a furniture pattern, a
threshold, a language rule) would otherwise look the same; with the digest in every row's
``extractor_version``, an archivist tells which rows a ``newsarchive reextract`` would change:
those whose ``extractor_version`` is not today's :data:`EXTRACTOR_VERSION`.

The digest is a sha256 of the bytes of the stage files that decide a row's text, metadata and
language (:data:`RULES`: every file of ``extraction/``, data files included, and the stage modules
the page stage runs), in sorted order of their paths, each path hashed with its bytes: the same
on every machine and Python version, whatever the files' times or where they are installed.
This module imports no library, so ``newsarchive --version`` prints it without loading the
extractor.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import version
from pathlib import Path

STAGES = Path(__file__).resolve().parent.parent  # pipelines/stages
# what decides a row's text, metadata and language, relative to STAGES: a folder stands for
# every file under it (bytecode caches left out); tests/pipelines/stages/extraction/test_provenance.py
# checks that every stage module the page stage imports is here
RULES = ("extraction", "charset.py", "language.py", "page.py", "tokens.py")
DIGEST_CHARS = 12  # of the sha256's hex digits shown: 48 bits, as many as tell rule sets apart
LIBRARIES = ("trafilatura", "readability-lxml")  # whose output the rules check and clean


def rule_files(root: Path = STAGES) -> list[Path]:
    """The files the digest covers under ``root``, in the order they are hashed."""
    files: list[Path] = []
    for name in RULES:
        path = root / name
        files += (
            [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.relative_to(root).parts]
            if path.is_dir()
            else [path]
        )
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def rules_digest(root: Path = STAGES) -> str:
    """The first :data:`DIGEST_CHARS` hex digits of the sha256 over :func:`rule_files`: each
    path (relative, with "/") and its bytes, line endings read as "\\n" (a checkout on Windows
    holds the same rules)."""
    digest = hashlib.sha256()
    for path in rule_files(root):
        data = path.read_bytes().replace(b"\r\n", b"\n")
        for chunk in (path.relative_to(root).as_posix().encode(), data):
            digest.update(len(chunk).to_bytes(8, "big") + chunk)
    return digest.hexdigest()[:DIGEST_CHARS]


RULES_DIGEST = rules_digest()


def newsarchive_version() -> str:
    """``newsarchive 0.1.0 rules 1a2b3c4d5e6f``: the package's version and its rules' digest."""
    return f"newsarchive {version('newsarchive')} rules {RULES_DIGEST}"


# every row's extractor_version:
# ``newsarchive 0.1.0 rules 1a2b3c4d5e6f, trafilatura 2.3.1, readability-lxml 0.9``
EXTRACTOR_VERSION = ", ".join([newsarchive_version(), *(f"{name} {version(name)}" for name in LIBRARIES)])
