"""The benchmark corpus: real problem instances written by others, fetched or generated into a
cache directory (never into the repository), with a manifest of origin, expected verdict and
rating. `python -m bench.corpus` assembles it."""

from bench.corpus.manifest import Instance, Manifest, default_cache

__all__ = ["Instance", "Manifest", "default_cache"]
