"""The contract compiles; and a broken schema aborts the process rather than raising."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from proofrace import schema

from harness import REPO


def test_the_schema_compiles_with_pycapnp() -> None:
    compiled = schema.load()
    assert compiled.currentSchemaVersion == 1
    methods = compiled.Dispatcher.schema.method_names_inherited
    assert {"solve", "provers"} <= set(methods)
    assert {"cancel", "result", "status"} <= set(compiled.CancelToken.schema.method_names_inherited)


def test_the_schema_compiles_with_the_reference_compiler() -> None:
    capnp_tool = shutil.which("capnp")
    assert capnp_tool, "the capnp compiler is installed by scripts/setup.sh"
    done = subprocess.run(
        [capnp_tool, "compile", "-o-", str(REPO / "schemas" / "proofrace.capnp")],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()


def test_the_request_defaults_match_the_contract() -> None:
    request = schema.load().SolveRequest.new_message()
    assert request.schemaVersion == 1
    assert request.format == "auto"
    assert request.strategy == "firstWins"
    assert request.quorum == 2
    assert request.timeoutMs == 0


def test_a_broken_schema_aborts_instead_of_raising(tmp_path: Path) -> None:
    broken = tmp_path / "broken.capnp"
    broken.write_text("@0xbc3317a5f0efb478;\nstruct Broken { field @0 :NoSuchType; }\n")
    probe = textwrap.dedent(
        f"""
        import capnp
        try:
            capnp.load({str(broken)!r})
        except Exception:
            print("raised")
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=False)
    assert done.returncode == -signal.SIGABRT
    assert b"raised" not in done.stdout
