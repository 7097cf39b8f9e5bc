"""Extraction quality on ``../shared/eval``: ``make eval`` prints the table.

Four extractors in the same run, on each dataset: ours page by page (as ``newsarchive extract``
runs it), ours by site (each page with the template of the OTHER pages of its site, as the crawl
extracts a page with what earlier pages taught), trafilatura's defaults and readability-lxml as
the shared yardstick (``score_extract.py``) runs them; each scored with the yardstick's own
functions. Times are per page, one page at a time in this process, for all four: wall-clock
median and p95, and the CPU summed over all pages, each against trafilatura alone.

The cross-validated figure: a dataset's pages are split by site into :data:`FOLDS` folds; each
fold is scored with the consensus constants (:data:`GRID`, around the current values) that score
best on the other folds. The constants were chosen looking at dev pages; the cross-validated F1
says what they are worth on pages they were not chosen on. A dataset without ground truth
(``gne_zh_noGT``) shows how many pages came out and how many the crawl would judge no article.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import itertools
import json
import re
import statistics
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from hashlib import blake2b
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from dateutil.parser import UnknownTimezoneWarning

from crawler.common_settings import EXTRACT_MIN_CHARS
from pipelines.stages.extraction import consensus, extractor
from pipelines.stages.extraction.extractor import article_chars, extract
from pipelines.stages.extraction.template import TEMPLATE_PAGES
from pipelines.tools.saved_pages import LearnedPage, templates_of_the_others

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
YARDSTICK = SHARED / "tools" / "score_extract.py"
DATASETS = ("daniel_zh", "daniel_en", "cwced_zh", "wcxb_article", "gne_zh_noGT")
OUTPUTS = Path(__file__).resolve().parent.parent / "output" / "eval"
TARGETS = {"daniel_zh": 0.955, "daniel_en": 0.95}  # mean F1 page by page; precision and recall >= 0.94 each
ROUND_AGO = {"cwced_zh": 0.907, "wcxb_article": 0.919}  # page by page, before issue 35: no lower
BY_SITE_TARGETS = {"daniel_zh": 0.97, "daniel_en": 0.96}  # pages grouped by site; P and R >= 0.95
AHEAD_OF_PEERS = {"cwced_zh": 0.02, "wcxb_article": 0.01}  # F1 over the best peer's
TIME_RATIO = 1.0  # ours against trafilatura alone, median and summed CPU
FOLDS = 5
# the consensus constants cross-validated, each at its value and a step either side
_STEPS = {"line_agrees": 0.1, "extractors_agree": 0.1, "paragraph_tokens": 5}
_CURRENT = {
    "line_agrees": consensus.LINE_AGREES,
    "extractors_agree": consensus.EXTRACTORS_AGREE,
    "paragraph_tokens": consensus.PARAGRAPH_TOKENS,
}
Constants = tuple[tuple[str, float], ...]  # (name, value) pairs, in _STEPS' order
Recorded = tuple[tuple[Any, ...], dict[str, Any], Any]  # agreed_text's arguments, the metadata
CURRENT: Constants = tuple(_CURRENT.items())
GRID: list[Constants] = [
    tuple(zip(_STEPS, values, strict=True))
    for values in itertools.product(
        *[[round(_CURRENT[name] + k * step, 6) for k in (-1, 0, 1)] for name, step in _STEPS.items()]
    )
]
OURS = "newsarchive, page by page"
BY_SITE = "newsarchive, by site"
TRAFILATURA = "trafilatura (defaults)"
READABILITY = "readability-lxml"
PEERS = (TRAFILATURA, READABILITY)
_FILE_NAMES = {
    OURS: "newsarchive",
    BY_SITE: "newsarchive-by-site",
    TRAFILATURA: "trafilatura",
    READABILITY: "readability-lxml",
}
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_DATED_CASE = re.compile(r"^\d{8}_(?P<host>[^_]+)_[0-9a-f]+$")  # daniel's <date>_<host>_<hash>


@dataclass
class Case:
    """One page of a dataset: its file, its ground truth (None without), its site's address."""

    path: Path
    gold: str | None
    url: str | None  # None: its site is not known, it is a site of its own

    @property
    def site(self) -> str:
        return urlsplit(self.url).hostname if self.url else self.path.name


@dataclass
class Score:
    """One extractor on one dataset: per page F1, precision, recall (empty without ground
    truth), texts, wall-clock and CPU milliseconds."""

    extractor: str
    dataset: str
    texts: list[str]
    ms: list[float]
    cpu_ms: list[float]
    prf: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def f1(self) -> float:
        return statistics.mean(f for _, _, f in self.prf)

    @property
    def precision(self) -> float:
        return statistics.mean(p for p, _, _ in self.prf)

    @property
    def recall(self) -> float:
        return statistics.mean(r for _, r, _ in self.prf)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.ms)

    @property
    def p95_ms(self) -> float:
        return statistics.quantiles(self.ms, n=20)[-1] if len(self.ms) > 1 else self.ms[0]

    @property
    def extracted(self) -> int:
        return sum(bool(text.strip()) for text in self.texts)

    @property
    def not_articles(self) -> int:
        """Pages the crawl would archive no article of (too little paragraph text)."""
        return sum(article_chars(text) < EXTRACT_MIN_CHARS for text in self.texts)


@dataclass
class CrossValidation:
    """The folds' pages, the constants each fold chose on the others, and per page F1 with them."""

    folds: list[int]
    chosen: dict[int, Constants]
    f1: list[float]
    replayed_differently: int  # pages the cached consensus did not give the extractor's text on

    @property
    def mean(self) -> float:
        return statistics.mean(self.f1)


@dataclass
class Evaluation:
    dataset: str
    cases: list[Case]
    scores: dict[str, Score]
    cross_validation: CrossValidation | None = None
    cli_agrees: tuple[int, int] | None = None  # by site: pages the CLI gave the same text on, of all


def yardstick() -> ModuleType:
    spec = importlib.util.spec_from_file_location("score_extract", YARDSTICK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pages(dataset: str) -> list[Path]:
    """The dataset's pages that have ground truth, as the yardstick picks them."""
    return [case.path for case in cases(SHARED / "eval" / dataset) if case.gold is not None]


def cases(folder: Path, gold_text: Callable[[dict], str] | None = None) -> list[Case]:
    """Every case of a dataset folder (``CASE.json`` beside ``CASE.html``), with its ground truth
    as the yardstick reads it (``gold_text``, default the yardstick's) and its site's address."""
    gold_text = gold_text or yardstick().gold_text
    found = []
    for json_path in sorted(folder.glob("*.json")):
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        path = json_path.with_suffix(".html")
        found.append(Case(path, gold_text(meta) if meta.get("text") else None, _site_url(path, meta)))
    return found


def site_urls(paths: list[Path]) -> dict[Path, str]:
    """The address of each page whose site is known (``--urls-file``'s map); a page left out is
    a site of its own."""
    urls = {}
    for path in paths:
        url = _site_url(path, json.loads(path.with_suffix(".json").read_text(encoding="utf-8")))
        if url:
            urls[path] = url
    return urls


def _site_url(path: Path, meta: dict[str, Any]) -> str | None:
    """The case's ``url`` when it names a host; else ``http://<site>/<case>``, the site its JSON
    names (``domain``; ``site_dir``, the folder of its source) or its file name carries
    (``<date>_<host>_<hash>``); else None."""
    given = meta.get("url")
    if isinstance(given, str) and urlsplit(given).hostname:
        return given
    dated = _DATED_CASE.match(path.stem)
    for site in (meta.get("domain"), meta.get("site_dir"), dated and dated["host"]):
        if isinstance(site, str) and _HOST.fullmatch(site):
            return f"http://{site}/{path.name}"
    return None


def fold_of(site: str, folds: int = FOLDS) -> int:
    """The site's fold: a hash of its name that is the same in every run and every process."""
    return int.from_bytes(blake2b(site.encode(), digest_size=8).digest(), "big") % folds


def choose_by_fold(
    folds: Sequence[int], page_scores: dict[Constants, Sequence[float]]
) -> dict[int, Constants]:
    """For each fold, the constants of the best mean score over the pages of the OTHER folds
    (ties: the current constants, then the first in the grid)."""
    chosen = {}
    for fold in sorted(set(folds)):
        others = [i for i, f in enumerate(folds) if f != fold]

        def on_others(constants: Constants, others: list[int] = others) -> tuple[float, bool]:
            scores = page_scores[constants]
            return (statistics.mean(scores[i] for i in others) if others else 0.0, constants == CURRENT)

        chosen[fold] = max(page_scores, key=on_others)
    return chosen


@contextmanager
def consensus_inputs() -> Iterator[list[Recorded | None]]:
    """While open, the consensus step of each :func:`extract` call is recorded in the last item of
    the list yielded (the caller appends None before each page): what ``agreed_text`` was given
    (the two extractors' texts, the page's tree), and the page's metadata before ``clean_lines``
    fills it. The step re-run alone with other constants then gives the page's text with them."""
    recorded: list[Recorded | None] = []
    agreed_text, clean_lines = extractor.agreed_text, extractor.clean_lines

    def recording_agreed_text(*args: Any, **kwargs: Any) -> str:
        recorded[-1] = (args, kwargs, None)
        return agreed_text(*args, **kwargs)

    def recording_clean_lines(text: str, metadata: Any) -> str:
        if recorded[-1] is not None:
            recorded[-1] = (*recorded[-1][:2], copy.deepcopy(metadata))
        return clean_lines(text, metadata)

    extractor.agreed_text, extractor.clean_lines = recording_agreed_text, recording_clean_lines
    try:
        yield recorded
    finally:
        extractor.agreed_text, extractor.clean_lines = agreed_text, clean_lines


def _replay(inputs: Recorded | None, text: str, constants: Constants) -> str:
    """The page's text with ``constants``: its consensus step and ``clean_lines`` again."""
    if inputs is None or inputs[2] is None:
        return text  # no consensus step ran: the constants do not change it
    args, kwargs, metadata = inputs
    agreed = consensus.agreed_text(*args, **{**kwargs, **dict(constants)})
    return extractor.clean_lines(agreed, copy.deepcopy(metadata))


def evaluate(datasets: Sequence[str] = DATASETS, quick: bool = False) -> list[Evaluation]:
    """Every extractor's texts, scores and times per dataset; with ``quick``, ours only, without
    the cross-validation and the check against the CLI."""
    stick = yardstick()
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    return [_evaluate(dataset, stick, quick) for dataset in datasets]


def _evaluate(dataset: str, stick: ModuleType, quick: bool) -> Evaluation:
    found = cases(SHARED / "eval" / dataset, stick.gold_text)
    truth = any(case.gold is not None for case in found)
    if truth:
        found = [case for case in found if case.gold is not None]
    texts, inputs = _page_by_page(found)
    templates = _leave_one_out(found)
    extractors: dict[str, Callable[[Case], str]] = {
        OURS: lambda case: extract(case.path.read_bytes(), case.path.as_uri()).text or "",
        # as the crawl runs it: the template of the site's other pages removed, the page's blocks learned
        BY_SITE: lambda case: (
            extract(
                case.path.read_bytes(),
                case.url or case.path.as_uri(),
                template=templates[case.path],
                learn=True,
            ).text
            or ""
        ),
    }
    if not quick:
        peers = stick.EXTRACTORS
        extractors[TRAFILATURA] = lambda case: peers["trafilatura"](_html(case.path)) or ""
        extractors[READABILITY] = lambda case: peers["readability"](_html(case.path)) or ""
    scores = _timed(dataset, extractors, found)
    if truth:
        for score in scores.values():
            score.prf = [stick.prf(text, case.gold) for text, case in zip(score.texts, found, strict=True)]
    evaluation = Evaluation(dataset, found, scores)
    if not quick:
        evaluation.cli_agrees = _cli_agrees(dataset, found, scores[BY_SITE].texts)
        if truth:
            evaluation.cross_validation = _cross_validate(found, texts, inputs, scores[OURS].texts, stick)
    return evaluation


def _page_by_page(found: list[Case]) -> tuple[list[str], list[Recorded | None]]:
    """Ours page by page, untimed, with each page's consensus inputs recorded."""
    texts = []
    with consensus_inputs() as recorded:
        for case in found:
            recorded.append(None)
            texts.append(extract(case.path.read_bytes(), case.path.as_uri()).text or "")
    return texts, recorded


def _leave_one_out(found: list[Case]) -> dict[Path, frozenset[int]]:
    """Each page's template, learned from the other pages of its site (``extract --urls-file``'s)."""
    sites = Counter(case.site for case in found)
    learned = []
    for case in found:
        if case.url and sites[case.site] > TEMPLATE_PAGES:
            extraction = extract(case.path.read_bytes(), case.url, learn=True)
            learned.append(
                LearnedPage(case.site, extraction.fingerprints or [], extraction.metadata.title or case.url)
            )
        else:
            learned.append(None)
    return dict(zip((case.path for case in found), templates_of_the_others(learned), strict=True))


def _timed(dataset: str, extractors: dict[str, Callable[[Case], str]], found: list[Case]) -> dict[str, Score]:
    """Runs every extractor on each page in turn (so that the machine's load is shared alike),
    writing the yardstick's JSON lines to OUTPUTS; texts and times per extractor."""
    for run in extractors.values():
        run(found[0])  # imports, models and caches load outside the measurement
    scores = {name: Score(name, dataset, [], [], []) for name in extractors}
    for case in found:
        for name, run in extractors.items():
            wall, cpu = time.perf_counter(), time.process_time()
            text = run(case)
            scores[name].cpu_ms.append((time.process_time() - cpu) * 1000)
            scores[name].ms.append((time.perf_counter() - wall) * 1000)
            scores[name].texts.append(text)
    for name, score in scores.items():
        with (OUTPUTS / f"{dataset}.{_FILE_NAMES[name]}.jsonl").open("w", encoding="utf-8") as out:
            for case, text in zip(found, score.texts, strict=True):
                out.write(json.dumps({"path": str(case.path), "text": text}, ensure_ascii=False) + "\n")
    return scores


def _cli_agrees(dataset: str, found: list[Case], texts: list[str]) -> tuple[int, int]:
    """Pages on which ``newsarchive extract --urls-file`` (all cores) gives the by-site text."""
    urls_file = OUTPUTS / f"{dataset}.urls"
    urls_file.write_text("".join(f"{c.path}\t{c.url}\n" for c in found if c.url), encoding="utf-8")
    command = ["extract", "--jsonl", "--urls-file", str(urls_file), *(str(c.path) for c in found)]
    printed = subprocess.run(
        [sys.executable, "-m", "crawler", *command], capture_output=True, text=True, check=False
    ).stdout
    cli = {record["path"]: record.get("text") or "" for record in map(json.loads, printed.splitlines())}
    return sum(cli.get(str(c.path)) == text for c, text in zip(found, texts, strict=True)), len(found)


def _cross_validate(
    found: list[Case],
    texts: list[str],
    inputs: list[Recorded | None],
    timed_texts: list[str],
    stick: ModuleType,
) -> CrossValidation:
    """Each grid point's per page F1 from the recorded consensus inputs (checked against the
    texts of the timed run); each fold scored with the constants its other folds chose."""
    page_scores = {
        constants: [
            stick.prf(_replay(page_inputs, text, constants), case.gold)[2]
            for case, text, page_inputs in zip(found, texts, inputs, strict=True)
        ]
        for constants in GRID
    }
    replayed_differently = sum(
        _replay(page_inputs, text, CURRENT) != timed
        for text, page_inputs, timed in zip(texts, inputs, timed_texts, strict=True)
    )
    folds = [fold_of(case.site) for case in found]
    chosen = choose_by_fold(folds, page_scores)
    f1 = [page_scores[chosen[fold]][i] for i, fold in enumerate(folds)]
    return CrossValidation(folds, chosen, f1, replayed_differently)


def _html(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")  # as the yardstick reads pages


def _prf(score: Score) -> str:
    return f"F1 {score.f1:.4f}, P {score.precision:.4f}, R {score.recall:.4f}"


def _judged(met: bool) -> str:
    return "met" if met else "NOT met"


def report(evaluations: list[Evaluation]) -> str:
    lines = [
        f"{'dataset':<13} {'extractor':<26} {'F1':>6} {'P':>6} {'R':>6} {'CV F1':>6} "
        f"{'ms median':>9} {'p95':>6} {'x traf median':>13} {'x traf CPU':>10}"
    ]
    for evaluation in evaluations:
        lines += _rows(evaluation)
    for evaluation in evaluations:
        lines += ["", *_targets(evaluation), *_folds(evaluation)]
    return "\n".join(lines)


def _rows(evaluation: Evaluation) -> list[str]:
    alone = evaluation.scores.get(TRAFILATURA)
    rows = []
    for name, score in evaluation.scores.items():
        if score.prf:
            quality = f"{score.f1:6.3f} {score.precision:6.3f} {score.recall:6.3f}"
            cv = evaluation.cross_validation
            quality += f" {cv.mean:6.3f}" if name == OURS and cv else f" {'':>6}"
        else:
            quality = f"{score.extracted} extracted, {score.not_articles} no article".ljust(27)
        ratios = (
            f"{score.median_ms / alone.median_ms:12.2f}x {sum(score.cpu_ms) / sum(alone.cpu_ms):9.2f}x"
            if alone
            else ""
        )
        rows.append(
            f"{evaluation.dataset:<13} {name:<26} {quality} "
            f"{score.median_ms:9.1f} {score.p95_ms:6.1f} {ratios}"
        )
    return rows


def _targets(evaluation: Evaluation) -> list[str]:
    dataset, scores = evaluation.dataset, evaluation.scores
    lines = []
    ours, by_site = scores[OURS], scores[BY_SITE]
    if dataset in TARGETS:
        met = ours.f1 >= TARGETS[dataset] and min(ours.precision, ours.recall) >= 0.94
        lines.append(
            f"{dataset}, page by page: F1 >= {TARGETS[dataset]}, P and R >= 0.94 "
            f"({_prf(ours)}): {_judged(met)}"
        )
    if dataset in ROUND_AGO:
        met = ours.f1 >= ROUND_AGO[dataset]
        lines.append(
            f"{dataset}, page by page: F1 >= {ROUND_AGO[dataset]}, a round ago's "
            f"({_prf(ours)}): {_judged(met)}"
        )
    if dataset in BY_SITE_TARGETS:
        target = BY_SITE_TARGETS[dataset]
        met = by_site.f1 >= target and min(by_site.precision, by_site.recall) >= 0.95
        lines.append(f"{dataset}, by site: F1 >= {target}, P and R >= 0.95 ({_prf(by_site)}): {_judged(met)}")
    peers = [scores[name] for name in PEERS if name in scores]
    if dataset in AHEAD_OF_PEERS and peers and ours.prf:
        best = max(peers, key=lambda score: score.f1)
        needed = best.f1 + AHEAD_OF_PEERS[dataset]
        for score in (ours, by_site):
            lines.append(
                f"{dataset}, {score.extractor}: F1 >= {needed:.4f}, {best.extractor}'s "
                f"+ {AHEAD_OF_PEERS[dataset]} ({_prf(score)}): {_judged(score.f1 >= needed)}"
            )
    if TRAFILATURA in scores:
        alone = scores[TRAFILATURA]
        for score in (ours, by_site):
            median, cpu = score.median_ms / alone.median_ms, sum(score.cpu_ms) / sum(alone.cpu_ms)
            lines.append(
                f"{dataset}, {score.extractor}: time against trafilatura alone <= {TIME_RATIO}x "
                f"(median {median:.2f}x, summed CPU {cpu:.2f}x): {_judged(max(median, cpu) <= TIME_RATIO)}"
            )
    sites = Counter(case.site for case in evaluation.cases)
    grouped = sum(sites[case.site] > TEMPLATE_PAGES for case in evaluation.cases)
    lines.append(
        f"{dataset}: {grouped} of {len(evaluation.cases)} pages have {TEMPLATE_PAGES} others of their site"
    )
    if evaluation.cli_agrees:
        same, total = evaluation.cli_agrees
        lines.append(
            f"{dataset}: `newsarchive extract --urls-file` gives the by-site text on {same} of {total} pages"
        )
    return lines


def _folds(evaluation: Evaluation) -> list[str]:
    """Per fold F1 of every extractor, ours with the current constants and with the fold's own."""
    cv = evaluation.cross_validation
    if cv is None:
        return []
    numbers = sorted(set(cv.folds))
    members = {fold: [i for i, f in enumerate(cv.folds) if f == fold] for fold in numbers}
    lines = [
        f"{evaluation.dataset} by fold (pages): "
        + " ".join(f"{fold + 1} ({len(members[fold])})".rjust(8) for fold in numbers)
    ]
    rows = [(name, [f for _, _, f in score.prf]) for name, score in evaluation.scores.items()]
    rows.insert(1, (f"{OURS}, cross-validated", cv.f1))
    for name, f1 in rows:
        cells = " ".join(f"{statistics.mean(f1[i] for i in members[fold]):8.3f}" for fold in numbers)
        lines.append(f"  {name:<44} {cells}")
    for fold in numbers:
        chosen = ", ".join(f"{name} {value:g}" for name, value in cv.chosen[fold])
        lines.append(f"  fold {fold + 1} chose {chosen}{' (current)' if cv.chosen[fold] == CURRENT else ''}")
    if cv.replayed_differently:
        lines.append(
            f"  WARNING: on {cv.replayed_differently} pages the cached consensus step did not give the "
            "extractor's text: the cross-validated figure is not to be trusted"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.eval_extraction", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=DATASETS,
        default=DATASETS,
        metavar="NAME",
        help=f"of {', '.join(DATASETS)} (default all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="ours only: no peers, no cross-validation, no CLI check"
    )
    args = parser.parse_args(argv)
    # htmldate (inside trafilatura) meets time zones like "EST" on these pages; harmless, we keep our dates
    warnings.filterwarnings("ignore", category=UnknownTimezoneWarning)
    print(report(evaluate(args.datasets, args.quick)))


if __name__ == "__main__":
    main()
