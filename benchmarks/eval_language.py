"""Language identification on ``../shared/eval`` (daniel_zh, daniel_en): ``make eval`` prints it,
``tests/pipelines/stages/test_language.py`` holds the detector to its targets with it.

Each case is judged on its ground-truth text, its headline (``title``), and the text our
extraction stage gets from the page (what the crawl archives). The expected language is the
case's ``lang``; the expected script of a Chinese case comes from its ground-truth text's own
characters (``zh_region`` is not reliable). Times are per page, extraction against detection.
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dateutil.parser import UnknownTimezoneWarning

from pipelines.stages.extraction.extractor import extract
from pipelines.stages.language import LanguageDetector, chinese_script

EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "eval"
DATASETS = ("daniel_zh", "daniel_en")


@dataclass
class Case:
    path: Path
    url: str
    language: str
    title: str
    text: str

    @property
    def script(self) -> str | None:
        return chinese_script(self.text) if self.language == "zh" else None


def cases(datasets: tuple[str, ...] = DATASETS) -> Iterator[Case]:
    for dataset in datasets:
        for path in sorted((EVAL / dataset).glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            yield Case(
                path.with_suffix(".html"), data["url"], data["lang"], data.get("title") or "", data["text"]
            )


@dataclass
class Tally:
    """Right answers out of all, and the wrong ones as (expected, got, what)."""

    right: int = 0
    total: int = 0
    wrong: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, expected: str | None, got: str | None, what: str) -> None:
        self.total += 1
        if expected == got:
            self.right += 1
        else:
            self.wrong.append((str(expected), str(got), what))

    @property
    def share(self) -> float:
        return self.right / self.total if self.total else 0.0


@dataclass
class Scores:
    text: Tally = field(default_factory=Tally)  # ground-truth texts
    text_script: Tally = field(default_factory=Tally)
    titles: Tally = field(default_factory=Tally)
    pages: Tally = field(default_factory=Tally)  # our extraction of the page, then detection
    pages_script: Tally = field(default_factory=Tally)
    empty_pages: int = 0  # extraction found no text: no row in a crawl
    cjk_confusions: int = 0  # Chinese cases labelled ko or ja, anywhere
    extraction_ms: list[float] = field(default_factory=list)
    detection_ms: list[float] = field(default_factory=list)


def evaluate(detector: LanguageDetector, with_pages: bool = True) -> Scores:
    scores = Scores()
    for case in cases():
        name = case.path.name
        guess = detector.detect(case.text)
        scores.text.add(case.language, guess.language, name)
        if case.title:
            title = detector.detect(case.title)
            scores.titles.add(case.language, title.language, case.title)
            scores.cjk_confusions += case.language == "zh" and title.language in ("ko", "ja")
        if case.language == "zh":
            scores.text_script.add(case.script, guess.script, name)
            scores.cjk_confusions += guess.language in ("ko", "ja")
        if not with_pages:
            continue
        start = time.perf_counter()
        extracted = extract(case.path.read_bytes(), case.url).text or ""
        middle = time.perf_counter()
        page = detector.detect(extracted)
        end = time.perf_counter()
        scores.extraction_ms.append((middle - start) * 1000)
        scores.detection_ms.append((end - middle) * 1000)
        if not extracted.strip():
            scores.empty_pages += 1
            continue
        scores.pages.add(case.language, page.language, name)
        if case.language == "zh":
            scores.pages_script.add(case.script, page.script, name)
            scores.cjk_confusions += page.language in ("ko", "ja")
    return scores


def report(scores: Scores) -> str:
    def row(what: str, tally: Tally) -> str:
        return f"{what:<44} {tally.share:6.3f}  ({tally.right}/{tally.total})"

    lines = [
        "language identification on ../shared/eval daniel_zh + daniel_en",
        row("language, ground-truth texts", scores.text),
        row("script of Chinese ground-truth texts", scores.text_script),
        row("language, headlines", scores.titles),
    ]
    if scores.extraction_ms:
        ratios = [d / e for d, e in zip(scores.detection_ms, scores.extraction_ms, strict=True) if e > 0]
        lines += [
            row("language, extracted page texts", scores.pages),
            row("script, extracted Chinese page texts", scores.pages_script),
            f"{'pages where extraction found no text':<44} {scores.empty_pages}",
            f"{'detection ms/page, median / p95':<44} {statistics.median(scores.detection_ms):.2f} / "
            f"{statistics.quantiles(scores.detection_ms, n=20)[-1]:.2f}",
            f"{'extraction ms/page, median':<44} {statistics.median(scores.extraction_ms):.2f}",
            f"{'detection / extraction time, median per page':<44} {statistics.median(ratios):.3f}",
        ]
    lines.append(f"{'Chinese labelled ko or ja (all of the above)':<44} {scores.cjk_confusions}")
    for name, tally in (
        ("text", scores.text),
        ("script", scores.text_script),
        ("title", scores.titles),
        ("page", scores.pages),
        ("page script", scores.pages_script),
    ):
        lines += [f"  wrong {name}: expected {e}, got {g}: {w}" for e, g, w in tally.wrong]
    return "\n".join(lines)


if __name__ == "__main__":
    # htmldate (inside trafilatura) meets time zones like "EST" on these pages; harmless, we keep our dates
    warnings.filterwarnings("ignore", category=UnknownTimezoneWarning)
    print(report(evaluate(LanguageDetector())))
