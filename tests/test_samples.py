"""samples/README.md says how the pigeonhole samples were made: its commands make them again,
byte for byte."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from harness import REPO, SAMPLES


def test_the_readme_commands_remake_the_pigeonhole_samples(tmp_path: Path) -> None:
    readme = (SAMPLES / "README.md").read_text()
    commands = re.findall(r"^python3 (scripts/make_pigeonhole\.py .+)$", readme, re.M)
    assert len(commands) == 2
    for command in commands:
        script, pigeons, prefix = shlex.split(command)
        out = tmp_path / Path(prefix).name
        subprocess.run([sys.executable, str(REPO / script), pigeons, str(out)], check=True)
        for suffix in (".cnf", ".smt2"):
            assert (REPO / (prefix + suffix)).read_bytes() == out.with_suffix(suffix).read_bytes()


def test_wrong_arguments_get_the_usage_not_a_traceback() -> None:
    done = subprocess.run([sys.executable, str(REPO / "scripts/make_pigeonhole.py"), "6"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode != 0 and done.stderr.startswith("usage:")
    assert "Traceback" not in done.stderr
