"""Extraction stage: page bytes to clean article text and metadata (:func:`extractor.extract`).

The package imports nothing itself: the crawl process uses ``template`` (each outlet's template,
learned from the workers' fingerprints) without loading the extractor's libraries (trafilatura,
readability-lxml, htmldate: 0.07 s and 10 MB), which only the worker processes need.
Its modules keep the rule of :mod:`pipelines.stages`: no ``archive``, no ``tools``.
"""
