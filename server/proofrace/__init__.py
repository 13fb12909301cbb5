"""proofrace: race theorem provers on one problem; the first decisive answer wins."""

__version__ = "0.1.0"
