"""Language stage: ISO 639-1 language, script for Chinese, and a confidence, the same every run.

langdetect is seeded through its own factory (no global state) and runs on a bounded sample
spread over the article. It is not trusted on Chinese: text whose letters are mostly Han
characters is Chinese when it has no Hangul or Kana, whatever langdetect says (it calls short
and Traditional Chinese Korean). The script (Hans/Hant) is read from the characters themselves.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import hanzidentifier
import langdetect
from langdetect.detector_factory import DetectorFactory
from langdetect.lang_detect_exception import LangDetectException
from scrapy.crawler import Crawler
from scrapy.statscollectors import StatsCollector

from crawler.items import Article

UNDETERMINED = "und"
_PROFILES = Path(langdetect.__file__).with_name("profiles")
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
_LATIN_WORD = re.compile(r"[^\W\d_]+")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_KANA = re.compile(r"[\u3040-\u30ff]")


@dataclass(frozen=True)
class LanguageGuess:
    language: str  # ISO 639-1, or "und"
    script: str | None  # ISO 15924 for Chinese: Hans or Hant
    confidence: float


class LanguageDetector:
    """langdetect behind a private, seeded factory; loading the profiles takes about a second."""

    def __init__(self, seed: int = 0, sample_chars: int = 2000):
        self.sample_chars = sample_chars
        self._factory = DetectorFactory()
        self._factory.load_profile(str(_PROFILES))
        self._factory.set_seed(seed)

    def detect(self, text: str) -> LanguageGuess:
        sample = sample_text(_URL.sub(" ", text), self.sample_chars)
        han = len(_HAN.findall(sample))
        hangul = len(_HANGUL.findall(sample))
        kana = len(_KANA.findall(sample))
        other_words = sum(1 for w in _LATIN_WORD.findall(_HAN.sub(" ", sample))
                          if not _HANGUL.search(w) and not _KANA.search(w))
        tokens = han + hangul + kana + other_words
        if tokens == 0:
            return LanguageGuess(UNDETERMINED, None, 0.0)
        if han and not hangul and not kana and han / tokens >= 0.5:
            return LanguageGuess("zh", chinese_script(sample), round(han / tokens, 3))
        detector = self._factory.create()
        detector.append(sample)
        try:
            best = detector.get_probabilities()[0]
        except (LangDetectException, IndexError):
            return LanguageGuess(UNDETERMINED, None, 0.0)
        language = best.lang.split("-")[0]
        if language in ("ko", "ja", "zh") and han and not hangul and not kana:
            language = "zh"
        script = chinese_script(sample) if language == "zh" else None
        return LanguageGuess(language, script, round(best.prob, 3))


def chinese_script(text: str) -> str:
    """Hant when more characters are Traditional-only than Simplified-only, else Hans."""
    simplified = traditional = 0
    for char in set(_HAN.findall(text)):
        kind = hanzidentifier.identify(char)
        if kind == hanzidentifier.SIMPLIFIED:
            simplified += 1
        elif kind == hanzidentifier.TRADITIONAL:
            traditional += 1
    return "Hant" if traditional > simplified else "Hans"


def sample_text(text: str, budget: int) -> str:
    """Up to ``budget`` characters taken from paragraphs spread evenly over the text."""
    text = unicodedata.normalize("NFKC", text)
    if len(text) <= budget:
        return text
    paragraphs = [p for p in text.split("\n") if p.strip()]
    if len(paragraphs) <= 1:
        step = len(text) // 4
        return "\n".join(text[i * step:i * step + budget // 4] for i in range(4))[:budget]
    picked: list[str] = []
    used = 0
    stride = max(1, len(paragraphs) // max(1, budget // 300))
    for paragraph in paragraphs[::stride]:
        piece = paragraph[:budget - used]
        picked.append(piece)
        used += len(piece)
        if used >= budget:
            break
    return "\n".join(picked)[:budget]


class LanguagePipeline:
    """Fills ``language``, ``language_script`` and ``language_confidence``.

    Settings: ``LANGUAGE_SEED`` (0), ``LANGUAGE_SAMPLE_CHARS`` (2000).
    Counts: ``language/<code>``.
    """

    def __init__(self, stats: StatsCollector, detector: LanguageDetector):
        self.stats = stats
        self.detector = detector

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> LanguagePipeline:
        settings = crawler.settings
        detector = LanguageDetector(settings.getint("LANGUAGE_SEED", 0),
                                    settings.getint("LANGUAGE_SAMPLE_CHARS", 2000))
        return cls(crawler.stats, detector)

    def process_item(self, item: Article) -> Article:
        if not isinstance(item, Article):
            return item
        guess = self.detector.detect(item.text or "")
        item.language = guess.language
        item.language_script = guess.script
        item.language_confidence = guess.confidence
        self.stats.inc_value(f"language/{guess.language}")
        return item
