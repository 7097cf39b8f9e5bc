"""Process plumbing any layer may use: ``pool`` (worker processes for the CPU-bound stages),
``imports`` (libraries kept out of a process), ``jsondata`` (JSON parsed bounded), ``uri`` (URIs
with no secret in them, for messages). Imports nothing else of ``pipelines``.
"""
