"""Language stage: ISO 639-1 language, the share of each language, script for Chinese, and a
confidence, the same every run, from a bounded sample spread over the article (so the cost stays
flat as articles grow). The script (Hans/Hant) is read from the characters themselves.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import hanzidentifier
import langdetect
from langdetect.detector_factory import DetectorFactory
from langdetect.lang_detect_exception import LangDetectException

if TYPE_CHECKING:
    from py3langid.langid import LanguageIdentifier

UNDETERMINED = "und"
MIN_SHARE = 0.05  # languages with less of the text are not listed in ``languages``
SHORT_WORDS = 8  # below this many words, langdetect guesses; py3langid decides instead
_PROFILES = Path(langdetect.__file__).with_name("profiles")
# web and mail addresses are not words of any language; a mail address is ASCII and starts
# where its run of address characters starts (tried inside the run as well, a text of no spaces
# took O(n²): 4 s for 5 MB of Chinese), and the Chinese around it stays
_URL = re.compile(
    r"\b(?:https?://|www\.)\S+|(?<![a-z0-9._%+-])[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+", re.IGNORECASE
)
_WORD = re.compile(r"[^\W\d_]+")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_KANA = re.compile(r"[\u3041-\u3096\u30a1-\u30fa]")  # not ・ or ー, which Chinese text uses too
_CJK = re.compile(f"{_HAN.pattern}|{_HANGUL.pattern}|{_KANA.pattern}")


@dataclass(frozen=True)
class LanguageGuess:
    language: str  # ISO 639-1, or "und"
    script: str | None  # ISO 15924 for Chinese: Hans or Hant
    confidence: float
    shares: tuple[tuple[str, float], ...] = ()  # (language, share of the text), largest first


class LanguageDetector:
    """Languages of a text by script first, then by statistics for what scripts cannot tell.

    Han, Kana and Hangul are counted per paragraph: a paragraph is Japanese when Kana make a
    tenth of its CJK characters, Korean when Hangul make a third, else Chinese (langdetect
    calls short and Traditional Chinese Korean, so it is not asked). Words in other scripts go to
    langdetect, seeded through a private factory; a few words (a headline) go to py3langid
    instead, restricted to langdetect's languages, since langdetect guesses on short text. Short
    runs of Latin words inside CJK paragraphs (names, acronyms) count for the paragraph's
    language. A share is tokens of a language over all tokens: one token per CJK character, one
    per word otherwise, as ``../shared/tools/score_extract.py`` counts them.
    """

    def __init__(self, seed: int = 0, sample_chars: int = 2000):
        self.seed = seed
        self.sample_chars = sample_chars

    @cached_property
    def _factory(self) -> DetectorFactory:
        """Loaded on first use: a crawl of Chinese outlets may never need it."""
        factory = _langdetect_factory()
        factory.set_seed(self.seed)
        return factory

    @cached_property
    def _short(self) -> LanguageIdentifier:
        """Loaded on first use (half a second, 75 MB, and numpy's 13 MB): only texts of a few
        words need it."""
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        known = {json.loads(path.read_bytes())["name"].split("-")[0] for path in _profile_files()}
        identifier.set_languages(sorted(known & set(identifier.nb_classes)))
        return identifier

    def detect(self, text: str) -> LanguageGuess:
        sample = sample_text(_URL.sub(" ", text), self.sample_chars)
        tokens: Counter[str] = Counter()
        other_words: list[str] = []
        for paragraph in sample.split("\n"):
            cjk = _CJK.findall(paragraph)
            words = _WORD.findall(_CJK.sub(" ", paragraph))
            if cjk:
                language = _cjk_language(paragraph)
                tokens[language] += len(cjk)
                if len(words) < 3:  # names and acronyms in CJK text
                    tokens[language] += len(words)
                    continue
            other_words += words
        total = sum(tokens.values()) + len(other_words)
        words_language, probability = None, 1.0
        # words too few to make MIN_SHARE of the text could neither be listed nor be the language:
        # they count in the total, unidentified
        if other_words and len(other_words) >= MIN_SHARE * total:
            words_language, probability = self._words_language(other_words)
            if words_language is None:  # neither detector knows them: left out
                total -= len(other_words)
        if words_language is not None:
            tokens[words_language] += len(other_words)
        if total == 0:
            return LanguageGuess(UNDETERMINED, None, 0.0)
        shares = tuple(
            (language, round(n / total, 3)) for language, n in tokens.most_common() if n / total >= MIN_SHARE
        )
        primary, share = shares[0]
        confidence = share * (probability if primary == words_language else 1.0)
        script = chinese_script(sample) if primary == "zh" else None
        return LanguageGuess(primary, script, round(confidence, 3), shares)

    def _words_language(self, words: list[str]) -> tuple[str | None, float]:
        """The language of non-CJK words, and how sure; None when neither detector knows."""
        text = " ".join(words)
        if len(words) < SHORT_WORDS:
            language, probability = self._short.classify(text)
            return language, float(probability)
        detector = self._factory.create()
        detector.append(text)
        try:
            best = detector.get_probabilities()[0]
        except (LangDetectException, IndexError):
            return None, 0.0
        return best.lang.split("-")[0], best.prob


class _SparseProbabilities:
    """langdetect's n-gram -> probability-per-language rows, kept sparse and made when first asked.

    langdetect keeps 55 floats for each of its 87,598 n-grams (61 MB in every process, and 0.2 s
    of CPU to build before the first text), yet an n-gram has a probability in 2 languages on
    average and in 1 for most, and a detector asks for a few thousand of them. Here the
    profiles' counts stay as read, and an n-gram's (language index, probability) pairs are
    worked out, from the same counts by the same division, when the detector first asks for
    it; the detector gets the dense row it expects.
    """

    __slots__ = ("_languages", "_pairs", "_profiles")

    def __init__(self, languages: int, profiles: list[tuple[dict[str, int], list[int]]]):
        self._languages = languages
        self._profiles = profiles  # per language: n-gram counts, and words per n-gram length
        self._pairs: dict[str, tuple[int | float, ...]] = {}  # the n-grams asked for so far

    def __contains__(self, ngram: object) -> bool:
        return ngram in self._pairs or any(ngram in counts for counts, _ in self._profiles)

    def __getitem__(self, ngram: str) -> list[float]:
        pairs = self._pairs.get(ngram)
        if pairs is None:
            if ngram not in self:
                raise KeyError(ngram)
            pairs = self._pairs[ngram] = self._pairs_of(ngram)
        row = [0.0] * self._languages
        for i in range(0, len(pairs), 2):
            row[pairs[i]] = pairs[i + 1]
        return row

    def _pairs_of(self, ngram: str) -> tuple[int | float, ...]:
        if not 1 <= len(ngram) <= 3:  # langdetect lists longer ones with no probability
            return ()
        pairs: tuple[int | float, ...] = ()
        for index, (counts, words) in enumerate(self._profiles):
            count = counts.get(ngram)
            if count is not None:
                pairs += (index, 1.0 * count / words[len(ngram) - 1])
        return pairs


def _profile_files() -> list[Path]:
    """langdetect's profiles, in the order ``DetectorFactory.load_profile`` reads them."""
    return [
        _PROFILES / name
        for name in os.listdir(_PROFILES)
        if not name.startswith(".") and (_PROFILES / name).is_file()
    ]


def _langdetect_factory() -> DetectorFactory:
    """A langdetect factory over its own profiles, read as ``DetectorFactory.load_profile`` and
    ``add_profile`` read them (same languages, order and probabilities)."""
    languages = len(os.listdir(_PROFILES))  # load_profile's count, taken before it skips anything
    names, profiles = [], []
    for path in _profile_files():
        profile = json.loads(path.read_bytes())
        names.append(profile["name"])
        profiles.append((profile["freq"], profile["n_words"]))
    factory = DetectorFactory()
    factory.langlist = names
    factory.word_lang_prob_map = _SparseProbabilities(languages, profiles)
    return factory


def _cjk_language(paragraph: str) -> str:
    han = len(_HAN.findall(paragraph))
    hangul = len(_HANGUL.findall(paragraph))
    kana = len(_KANA.findall(paragraph))
    if hangul and hangul * 3 >= han + hangul + kana:
        return "ko"
    if kana >= 2 and kana * 10 >= han + kana:
        return "ja"
    return "zh"


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
        return "\n".join(text[i * step : i * step + budget // 4] for i in range(4))[:budget]
    picked: list[str] = []
    used = 0
    stride = max(1, len(paragraphs) // max(1, budget // 300))
    for paragraph in paragraphs[::stride]:
        piece = paragraph[: budget - used]
        picked.append(piece)
        used += len(piece)
        if used >= budget:
            break
    return "\n".join(picked)[:budget]
