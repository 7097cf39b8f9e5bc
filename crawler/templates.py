"""Each outlet's template (``pipelines/stages/extraction/template.py``) in the crawl.

Every page is extracted with its outlet's template as the archive held it when the crawl opened
(``_templates/<outlet>/<crawl id>.json``, the newest :data:`TEMPLATES_PER_OUTLET` merged), never
with what the crawl learns meanwhile: a page's row is then the same whatever the order pages
arrive in. The workers of a shared crawl extract with the same templates: the first to open puts
them in Redis (``newsarchive:<crawl>:templates``), and every worker, joining at any time, takes
them from there. The crawl learns from every page, for the next crawl; an outlet's first crawl has
no template. At close each outlet's learning is merged (:meth:`SiteTemplate.merge`) with what the
archive holds then (what the crawl opened with, and what other workers of a shared crawl saved
meanwhile) and written, and the files merged are removed: the workers of a shared crawl do this
for an outlet one at a time (``lock``). Nothing is lost if two ever do it at once: every file of
an outlet is read and merged, by this and by the next crawl.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from scrapy.statscollectors import StatsCollector

from crawler.extensions import note_damaged
from pipelines.archive.keys import template_key
from pipelines.archive.lock import ensure_held
from pipelines.archive.storage import Store, StoreError
from pipelines.archive.templates import (
    TEMPLATES_PER_OUTLET,
    merged_template,
    newest_templates,
    outlet_template_keys,
    stored_templates,
)
from pipelines.runtime.jsondata import loads_bounded
from pipelines.stages.extraction.template import MAX_TEMPLATE, SiteTemplate

if TYPE_CHECKING:  # a shared crawl's only: one process imports no Redis client
    from crawler.shared.state import RedisCrawl

logger = logging.getLogger(__name__)

# What a shared crawl's templates may take in Redis: 16 hex digits a fingerprint, at most
# MAX_TEMPLATE (80 KB) of each outlet; a few hundred each for a few thousand outlets.
SHARED_MAX_BYTES = 64 << 20

_FINGERPRINTS = re.compile(r"(?:[0-9a-f]{16})*")


def _deleted(store: Store, keys: list[str]) -> int:
    """Delete these templates, oldest first; how many, up to the first the store refuses (it
    and the rest stay)."""
    for done, key in enumerate(keys):
        try:
            ensure_held(store)
            store.delete(key)
        except StoreError as exc:
            logger.warning("%s not deleted (%s): the store refuses deletes, older templates stay", key, exc)
            return done
    return len(keys)


def _encoded(templates: dict[str, frozenset[int]]) -> bytes:
    """The outlets' templates as the workers of a crawl share them: each one's fingerprints,
    sorted, 16 hex digits each."""
    shared = {outlet_id: "".join(f"{k:016x}" for k in sorted(t)) for outlet_id, t in templates.items() if t}
    return json.dumps(shared, sort_keys=True, separators=(",", ":")).encode()


def _decoded(value: bytes, outlet_ids: list[str]) -> dict[str, frozenset[int]]:
    """What :func:`_encoded` wrote, of these outlets only; ``ValueError`` saying why not."""
    shared = loads_bounded(value, SHARED_MAX_BYTES, "the crawl's templates")
    if not isinstance(shared, dict):
        raise ValueError(f"the crawl's templates: a JSON {type(shared).__name__}, not an object")
    decoded = {}
    for outlet_id, fingerprints in shared.items():
        if outlet_id not in outlet_ids:
            raise ValueError(f"the crawl's templates: {outlet_id[:40]!r} is no outlet of this crawl")
        if not (
            isinstance(fingerprints, str)
            and len(fingerprints) <= 16 * MAX_TEMPLATE
            and _FINGERPRINTS.fullmatch(fingerprints)
        ):
            raise ValueError(
                f"the crawl's templates: {outlet_id}'s are not up to {MAX_TEMPLATE} fingerprints "
                "of 16 hex digits"
            )
        decoded[outlet_id] = frozenset(
            int(fingerprints[i : i + 16], 16) for i in range(0, len(fingerprints), 16)
        )
    return decoded


def _unlocked(outlet_id: str) -> AbstractContextManager[object]:
    return contextlib.nullcontext()


class TemplateLearning:
    """The outlets' templates as the crawl opened (extracted with), and what it learns (saved).

    What makes a worker's rows differ from another worker's or another run's (a template it could
    not read, the crawl's shared templates it could not use) is a problem of the run
    (:func:`crawler.extensions.note_damaged`): its exit code says so."""

    def __init__(self, stats: StatsCollector):
        self.stats = stats
        self.stored: dict[str, frozenset[int]] = {}
        self.learned: dict[str, SiteTemplate] = defaultdict(SiteTemplate)

    def load(self, store: Store, outlet_ids: list[str], shared: RedisCrawl | None = None) -> None:
        """The archive's templates of these outlets (blocking: run it in a thread). Only their
        folders are listed: a crawl of one outlet costs the same in an archive of a thousand.
        ``shared``: the Redis crawl this worker is one of; the templates are those its first
        worker put there (:meth:`crawler.shared.state.RedisCrawl.agree`)."""
        problems: list[str] = []
        own = stored_templates(store, outlet_ids, problems)
        self.stored = own if shared is None else self._shared(own, shared, outlet_ids, problems)
        note_damaged(self.stats, problems)

    @staticmethod
    def _shared(
        own: dict[str, frozenset[int]],
        crawl: RedisCrawl,
        outlet_ids: list[str],
        problems: list[str],
    ) -> dict[str, frozenset[int]]:
        """The templates the crawl's first worker put in Redis, or this worker's own when they
        cannot be had (a problem: its rows may then differ from the other workers')."""
        import redis  # a shared crawl's only: one process imports no Redis client

        try:
            shared = crawl.agree("templates", _encoded(own), SHARED_MAX_BYTES)
            return own if shared is None else _decoded(shared, outlet_ids)  # None: the crawl ended
        except redis.RedisError as exc:
            why = f"Redis refused them ({type(exc).__name__}: {exc})"
        except ValueError as exc:
            why = str(exc)
        problems.append(
            f"the crawl's templates in Redis not used ({why}); this worker extracted with its own, "
            "its rows may differ from the other workers'"
        )
        logger.warning("%s", problems[-1])
        return own

    def template(self, outlet_id: str) -> frozenset[int]:
        return self.stored.get(outlet_id, frozenset())

    def learn(self, outlet_id: str, fingerprints: list[int], article: str) -> None:
        self.learned[outlet_id].learn(fingerprints, article)

    def save(
        self,
        store: Store,
        spool: Path,
        crawl_id: str,
        lock: Callable[[str], AbstractContextManager[object]] = _unlocked,
    ) -> None:
        """Each learned outlet's template, merged with what the archive holds now, into the
        archive, and the files merged out (blocking). ``lock``, given an outlet, keeps the other
        workers of a shared crawl from saving its template meanwhile. What cannot be written
        is lost."""
        learned = sorted(outlet_id for outlet_id, template in self.learned.items() if template.pages)
        if not learned:
            return
        spool.mkdir(parents=True, exist_ok=True)
        deletes = True  # until the store refuses one: then none is asked again this crawl
        for done, outlet_id in enumerate(learned):
            with lock(outlet_id):
                saved = self._saved(store, spool, template_key(outlet_id, crawl_id), outlet_id, deletes)
            if isinstance(saved, StoreError):
                # the rest are not tried: each would wait out the same failing store (its
                # timeouts and retries) before the crawl could end; one warning names them all
                logger.warning("the templates of %s not kept (%s)", ", ".join(learned[done:]), saved)
                return
            deletes = saved

    def _saved(self, store: Store, spool: Path, key: str, outlet_id: str, deletes: bool) -> bool | StoreError:
        """One outlet's template saved as ``key``: the newest :data:`TEMPLATES_PER_OUTLET` of its
        templates read and merged with what this crawl learned, written, and deleted. The older
        ones are deleted unread: no crawl reads them. Never a file more than the bound: when the
        folder is full, the oldest goes first, and nothing is written if the store refuses (unless
        it deleted some: the folder does not grow).
        Whether deletes still work; the store's error when it failed (listing or writing)."""
        try:
            keys = newest_templates(outlet_template_keys(store, [outlet_id]))[0].get(outlet_id, [])
        except StoreError as exc:
            return exc
        template, merged = merged_template(store, keys[:TEMPLATES_PER_OUTLET], [])
        template.merge(self.learned[outlet_id])
        beyond = keys[TEMPLATES_PER_OUTLET:]
        if beyond:
            logger.warning(
                "%d older templates of %s not read (no crawl reads them): deleted", len(beyond), outlet_id
            )
        # oldest first: the older ones (no crawl reads them), then the merged (in ``template``)
        deletable = [k for k in reversed([*merged, *beyond]) if k != key]
        files = len({*keys, key})
        asked = deletable[: max(files - TEMPLATES_PER_OUTLET, 0)] if deletes else []
        freed = _deleted(store, asked)
        deletes = deletes and freed == len(asked)
        if files - freed > max(TEMPLATES_PER_OUTLET, len(keys)):  # one more would pass the bound
            logger.warning(
                "the template of %s not kept: %d of its templates stay (the store refuses their deletes, "
                "or cannot read them); they are read, and learned from, by the next crawl",
                outlet_id,
                len(keys) - freed,
            )
            return deletes
        if (failed := self._written(store, spool, key, template)) is not None:
            return failed
        return deletes and _deleted(store, deletable[len(asked) :]) == len(deletable) - len(asked)

    @staticmethod
    def _written(store: Store, spool: Path, key: str, template: SiteTemplate) -> StoreError | None:
        """The store's error, or None once ``key`` holds the template."""
        with tempfile.NamedTemporaryFile(dir=spool, prefix="template-", delete=False) as handle:
            handle.write(template.to_json())
        try:
            ensure_held(store)
            store.publish(Path(handle.name), key)
        except StoreError as exc:
            return exc
        finally:
            Path(handle.name).unlink(missing_ok=True)
        return None
