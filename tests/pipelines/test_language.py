from __future__ import annotations

import pytest

from pipelines.language import LanguageDetector, sample_text
from tests.conftest import SHARED

SEEDS = sorted((SHARED / "seeds").glob("*.txt"))
SEED_LANGUAGES = {"000": "en", "001": "en", "002": "zh", "003": "zh", "004": "en"}


@pytest.fixture(scope="module")
def detector():
    return LanguageDetector(seed=0)


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.name[:3])
def test_seed_articles(detector, seed):
    guess = detector.detect(seed.read_text(encoding="utf-8"))
    assert guess.language == SEED_LANGUAGES[seed.name[:3]]
    assert guess.script == ("Hans" if guess.language == "zh" else None)
    assert guess.confidence > 0.9


@pytest.mark.parametrize(("text", "script"), [
    ("總統府發言人表示", "Hant"),
    ("臺北市長出席記者會", "Hant"),
    ("內政部公布統計資料", "Hant"),
    ("山西日报", "Hans"),
    ("村超带火榕江", "Hans"),
    ("上海", "Hans"),
])
def test_short_han_text_is_chinese_never_korean_or_japanese(detector, text, script):
    guess = detector.detect(text)
    assert guess.language == "zh"
    assert guess.script == script


@pytest.mark.parametrize("text", ["", "   ", "2024-03-11 11:24", "https://difang.gmw.cn/cq/ 12345",
                                  "——……（）", "www.example.com 3.14"])
def test_no_words_is_undetermined(detector, text):
    guess = detector.detect(text)
    assert (guess.language, guess.script, guess.confidence) == ("und", None, 0.0)


def test_japanese_and_korean_stay_themselves(detector):
    assert detector.detect("東京で会議が開かれた").language == "ja"
    assert detector.detect("서울에서 회의가 열렸다").language == "ko"


def test_same_answer_every_time(detector):
    text = "Representative members said they would keep working hard."
    first = detector.detect(text)
    assert all(LanguageDetector(seed=0).detect(text) == first for _ in range(3))


def test_sample_is_bounded_and_spread(detector):
    paragraphs = [f"paragraph {i} " + "word " * 60 for i in range(200)]
    sample = sample_text("\n".join(paragraphs), 2000)
    assert len(sample) <= 2000
    assert "paragraph 0 " in sample and "paragraph 19" not in sample.split("\n")[1]
    assert any(f"paragraph {i} " in sample for i in range(150, 200))
