"""``make eval``: each case's site, the folds by site, constants chosen on the other folds only,
and the consensus step replayed from what it was given."""

from __future__ import annotations

from collections import Counter

import pytest

from benchmarks.eval_extraction import (
    CURRENT,
    GRID,
    OURS,
    _replay,
    cases,
    choose_by_fold,
    consensus_inputs,
    fold_of,
    main,
    site_urls,
)
from pipelines.stages.extraction import extractor
from pipelines.stages.extraction.extractor import extract
from tests.conftest import FIXTURES

CASES = FIXTURES / "eval"


def test_a_cases_site_is_its_url_else_what_its_json_or_file_name_says(yardstick):
    found = {case.path.stem: case for case in cases(CASES, yardstick.gold_text)}
    urls = site_urls([case.path for case in found.values()])
    by_stem = {path.stem: url for path, url in urls.items()}
    assert by_stem == {
        "0b7c9d2e-site-in-url": "https://shop.example.com/blog/post-1",
        "20111209_news.example.cn_3d4e5f": "http://www.valley.example/20111209_news.example.cn_3d4e5f.html",
        "20111209_news.example.cn_0a1b2c": "http://news.example.cn/20111209_news.example.cn_0a1b2c.html",
        "163_1": "http://163/163_1.html",
    }
    assert found["4fa9dfe4-no-site"].site == "4fa9dfe4-no-site.html"  # a site of its own
    assert found["20111209_news.example.cn_3d4e5f"].site == "www.valley.example"
    assert found["163_1"].gold is None  # no ground truth
    assert found["20111209_news.example.cn_0a1b2c"].gold == "正文第一段。"  # the headline is not scored


def test_folds_are_by_site_and_the_same_in_every_run():
    assert [fold_of(site) for site in ("www.bbc.co.uk", "udn.com", "shop.example.com")] == [1, 2, 0]
    sites = [f"news{n}.example.com" for n in range(200)]
    assert set(Counter(map(fold_of, sites)).values()) != {200}  # spread, not one fold
    assert set(map(fold_of, sites)) == set(range(5))


def test_each_fold_is_scored_with_the_constants_the_other_folds_chose():
    """Fold 0's own pages prefer the current constants, the other folds another point: fold 0
    must take the other folds' choice, and fold 1 (whose others are fold 0 and 2) the current."""
    other = next(constants for constants in GRID if constants != CURRENT)
    folds = [0, 0, 0, 1, 2]
    scores = {constants: [0.5] * len(folds) for constants in GRID}
    scores[CURRENT] = [1.0, 1.0, 1.0, 0.0, 0.5]
    scores[other] = [0.0, 0.0, 0.0, 1.0, 0.6]
    chosen = choose_by_fold(folds, scores)
    assert chosen[0] == other
    assert chosen[1] == CURRENT and chosen[2] == CURRENT


def test_ties_keep_the_current_constants():
    folds = [0, 1]
    assert set(choose_by_fold(folds, {constants: [0.5, 0.5] for constants in GRID}).values()) == {CURRENT}


def test_the_consensus_step_replayed_gives_the_extractors_text():
    """The cross-validation re-runs only the consensus step from recorded inputs: with the
    current constants it must give what extract gave, and other constants change some text."""
    pages = sorted((FIXTURES / "pages").glob("*.html"))
    texts = []
    with consensus_inputs() as recorded:
        for page in pages:
            recorded.append(None)
            texts.append(extract(page.read_bytes(), page.as_uri()).text or "")
    assert extractor.agreed_text.__name__ == "agreed_text"  # put back
    assert sum(inputs is not None for inputs in recorded) > len(pages) / 2
    assert [_replay(inputs, text, CURRENT) for inputs, text in zip(recorded, texts, strict=True)] == texts
    strict = (("line_agrees", 1.01), ("extractors_agree", 0.0), ("paragraph_tokens", 1000))  # none agree
    assert [_replay(inputs, text, strict) for inputs, text in zip(recorded, texts, strict=True)] != texts


@pytest.mark.slow  # every page of a dataset, twice
def test_quick_eval_prints_our_rows(capsys):
    main(["--quick", "--datasets", "cwced_zh"])
    printed = capsys.readouterr().out
    assert f"cwced_zh      {OURS}" in printed and "trafilatura" not in printed
    assert "cwced_zh, page by page: F1 >= 0.907, a round ago" in printed
