"""The contract compiles; and a broken schema aborts the process rather than raising."""

from __future__ import annotations

import json
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
    assert compiled.currentSchemaVersion == 2
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


_SHAPE = textwrap.dedent(
    """
    import json, sys
    import capnp

    def fields(node):
        out = {}
        for f in node.struct.fields:
            kind = str(f.which())
            type_name = str(f.slot.type.which()) if kind == "slot" else "group"
            ordinal = int(f.ordinal.explicit) if kind == "slot" else -1
            out[str(f.name)] = [ordinal, type_name]
        return out

    def walk(item, name, shape):
        node = item.schema.node
        kind = str(node.which())
        entry = {"id": int(node.id), "kind": kind}
        if kind == "struct":
            entry["fields"] = fields(node)
        elif kind == "enum":
            entry["names"] = [str(e.name) for e in node.enum.enumerants]
        elif kind == "interface":
            entry["names"] = [str(m.name) for m in node.interface.methods]
            # Each method's parameters and results are structs that may only grow too.
            for method, schema in item.schema.methods.items():
                sides = (("params", schema.param_type), ("results", schema.result_type))
                for side, struct in sides:
                    shape[f"{name}.{method}.{side}"] = {
                        "id": int(struct.node.id), "kind": "struct", "fields": fields(struct.node)
                    }
        shape[name] = entry
        for nested in node.nestedNodes:
            child = getattr(item, str(nested.name), None)
            if child is not None and hasattr(child, "schema"):
                walk(child, name + "." + str(nested.name), shape)

    module = capnp.load(sys.argv[1])
    shape = {}
    for name in dir(module):
        item = getattr(module, name)
        if hasattr(getattr(item, "schema", None), "node"):
            walk(item, name, shape)
    print(json.dumps(shape))
    """
)


def _shape(path: Path) -> dict[str, dict[str, object]]:
    """Each type's id, and its fields (ordinal, type), enumerants or methods, in order. Read in
    a subprocess: pycapnp aborts on a second file with the same id."""
    done = subprocess.run(
        [sys.executable, "-c", _SHAPE, str(path)], capture_output=True, check=True, text=True
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_the_schema_only_grows() -> None:
    """Every field, enumerant and method of the first published schema keeps its name, number
    and type: old clients (C++, Go, Rust, Python) still read new answers."""
    old = _shape(REPO / "tests" / "fixtures" / "proofrace-v1.capnp")
    new = _shape(REPO / "schemas" / "proofrace.capnp")
    assert len(old) > 20
    for name, entry in old.items():
        assert name in new, f"{name} was removed"
        grown = new[name]
        assert grown["id"] == entry["id"] and grown["kind"] == entry["kind"], name
        if "fields" in entry:
            new_fields = grown["fields"]
            assert isinstance(new_fields, dict)
            for field, shape in entry["fields"].items():  # type: ignore[attr-defined]
                assert new_fields.get(field) == shape, f"{name}.{field} changed"
        if "names" in entry:
            names = entry["names"]
            assert isinstance(names, list)
            assert grown["names"][: len(names)] == names, f"{name} renumbered"  # type: ignore[index]
