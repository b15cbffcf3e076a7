"""The package's import graph (``scripts/import_graph.py``): no import cycle, no private name imported from
another module, and docs/architecture.md shows the graph the code has."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ig():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("import_graph", None)


def test_the_package_has_no_import_cycle(ig):
    assert ig.cycles(ig.build()) == []


def test_no_module_imports_a_private_name_of_another(ig):
    assert ig.private_imports() == []


def test_architecture_md_shows_the_import_graph_of_the_code(ig):
    assert ig.current_doc_block() == ig.doc_block(ig.render(ig.build())), (
        "docs/architecture.md is stale: run python scripts/import_graph.py --write")


def test_the_checker_finds_cycles_private_imports_and_registry_edges(ig, tmp_path):
    pkg = tmp_path / "taosr1_verl"
    (pkg / "sub").mkdir(parents=True)
    (tmp_path / "tests").mkdir()
    files = {
        "__init__.py": "",
        "a.py": "from taosr1_verl.b import thing\n",
        "b.py": "def f():\n    from taosr1_verl import a\nthing = 1\n_hidden = 2\n",
        "c.py": 'TARGETS = {"x": "taosr1_verl.sub.d:D"}\n',
        "sub/__init__.py": "",
        "sub/d.py": "from ..c import TARGETS\nfrom taosr1_verl.b import _hidden\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    (tmp_path / "tests" / "test_x.py").write_text("from taosr1_verl.b import _hidden\n")
    graph = ig.build(tmp_path)
    assert graph["taosr1_verl.a"].eager == {"taosr1_verl.b"} and graph["taosr1_verl.b"].lazy == {"taosr1_verl.a"}
    assert ig.cycles(graph) == [["taosr1_verl.a", "taosr1_verl.b"], ["taosr1_verl.c", "taosr1_verl.sub.d"]]
    assert sorted(ig.private_imports(tmp_path)) == [
        "taosr1_verl/sub/d.py:2: _hidden from taosr1_verl.b", "tests/test_x.py:1: _hidden from taosr1_verl.b"]
    assert "Import cycles:\n  a <-> b\n  c <-> sub.d" in ig.render(graph)
