"""A small part of the check corpus in CI: every pitfall, and small generated families with
answers known by construction, solved through the real server with `firstWins`. None may be
wrong; every pitfall must be right."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness import REPO, RunningServer

# `bench/` is a folder of the checkout, not an installed package.
sys.path.insert(0, str(REPO))

from bench.check import corpus
from bench.check.run import check, counts
from bench.corpus.manifest import Manifest


@pytest.fixture(scope="module")
def smoke_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("check-corpus")
    corpus.assemble(directory, smoke=True, say=lambda _line: None)
    return directory


@pytest.mark.parametrize("confirm", [False, True])
def test_the_smoke_corpus_gets_no_wrong_verdict(
    server: RunningServer, run, smoke_corpus: Path, confirm: bool
) -> None:
    manifest = Manifest.load(smoke_corpus)
    results = run(check(server.address, smoke_corpus, manifest.instances, 20.0, confirm, say=print))
    assert len(results) == len(manifest.instances) > 25
    tally = counts(results)
    assert tally["wrong"] == 0, [r for r in results if r.mark == "wrong"]
    not_right = [(r.name, r.verdict) for r in results if r.mark != "correct"]
    if confirm:
        # A lone answer with nothing to confirm it is not returned: only those may be undecided.
        assert all(verdict == "unknown" for _name, verdict in not_right), not_right
    else:
        assert not_right == []
