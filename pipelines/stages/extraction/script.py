"""Traditional Chinese read through the line rules, which are written once, in Simplified.

Outlets in Taiwan and Hong Kong, and Big5 pages, print 責任編輯 and 來源 where the mainland prints
责任编辑 and 来源. The rules match a Simplified reading of each line (OpenCC's ``t2s``), one
character for one, so a match's spans fit the original line and what is kept (an editor's
name, a source) stays as printed.
"""

from __future__ import annotations

import re

from opencc import OpenCC

_TO_SIMPLIFIED = OpenCC("t2s")


def for_rules(text: str) -> str:
    """``text`` with Traditional characters as Simplified; as it is if a conversion would change
    its length (a phrase rewritten), since spans must fit the original."""
    converted = _TO_SIMPLIFIED.convert(text)
    return converted if len(converted) == len(text) else text


def printed(match: re.Match[str], text: str, *groups: str) -> str | None:
    """The first of ``groups`` that matched, as ``text`` (the original line) prints it."""
    for group in groups:
        if match.group(group):
            return text[match.start(group) : match.end(group)]
    return None
