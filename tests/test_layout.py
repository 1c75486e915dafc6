"""The tree's rules, checked: the flow's packages import one way, nothing imports in a circle,
and a gateway loads nothing of the central (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers.support import Broker, Gateway, wait_for

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("mashang", "edge", "cloud_bridge", "devices", "lab")
# What each top-level package may import of the others.
ALLOWED = {
    "mashang": set(),
    "edge": {"mashang"},
    "cloud_bridge": {"mashang"},
    "devices": {"mashang"},
    "lab": {"mashang", "edge", "cloud_bridge", "devices"},
}


# Within the gateway, what each stage may import of the others: data flows one way, and only
# the wiring (edge.gateway) and the tools see every stage. Everything may import edge.config,
# edge.events, edge.words and mashang.
STAGES = {
    "edge.source": set(),
    "edge.transform": {"edge.source", "edge.buffer"},
    "edge.buffer": set(),
    "edge.sink": {"edge.buffer"},
    "edge.downlink": {"edge.sink"},
    "edge.ops": {"edge.source", "edge.buffer", "edge.sink", "edge.registry_store"},
}
SHARED = {"edge.config", "edge.events", "edge.words"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """Every module of ours that `path` imports, anywhere in it (functions and TYPE_CHECKING
    blocks included: a cycle hidden behind them is still a cycle). `from a import b` counts
    as importing the module a.b when there is one, else as importing a."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
    return (found & modules) - {name}


def import_graph() -> dict[str, set[str]]:
    paths = [path for package in PACKAGES for path in (REPO / package).rglob("*.py")]
    modules = {module_name(path): path for path in paths}
    return {name: imports_of(path, name, set(modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.unit
def test_no_module_imports_itself_in_a_circle() -> None:
    assert cycles(import_graph()) == []


@pytest.mark.unit
def test_the_cycle_finder_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.unit
def test_each_package_imports_only_what_it_may() -> None:
    wrong = [
        f"{source} imports {target}"
        for source, targets in import_graph().items()
        for target in targets
        if target.split(".")[0] != source.split(".")[0]
        and target.split(".")[0] not in ALLOWED[source.split(".")[0]]
    ]
    assert wrong == []


def stage_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


@pytest.mark.unit
def test_each_stage_of_the_gateway_imports_only_what_it_may() -> None:
    wrong = [
        f"{source} imports {target}"
        for source, targets in import_graph().items()
        if stage_of(source) in STAGES
        for target in targets
        if target.startswith("edge.") and stage_of(target) != stage_of(source)
        and stage_of(target) not in STAGES[stage_of(source)] | SHARED
    ]
    assert wrong == []


@pytest.mark.unit
def test_issuing_and_private_keys_stay_in_the_central() -> None:
    importers = [source for source, targets in import_graph().items()
                 if any(t.startswith("cloud_bridge.issuing") for t in targets)
                 and not source.startswith(("cloud_bridge.", "lab."))]
    assert importers == []


@pytest.mark.system
def test_a_running_gateway_loads_no_central_module(tmp_path: Path, broker: Broker) -> None:
    """The real `mashang gateway` process, with every import it makes logged by Python."""
    gateway = Gateway(tmp_path / "gateway", broker.port, "http://127.0.0.1:9")
    gateway.env["PYTHONPROFILEIMPORTTIME"] = "1"
    gateway.start()
    try:
        wait_for(lambda: "running" in gateway.output(), 20, what="the gateway to say it runs")
    finally:
        assert gateway.terminate() == 0
    loaded = {line.rsplit("|", 1)[-1].strip() for line in gateway.output().splitlines()
              if line.startswith("import time:")}
    ours = {name for name in loaded if name.split(".")[0] in PACKAGES}
    assert "edge.gateway" in ours, "the import trace is empty: the check would prove nothing"
    assert sorted(n for n in ours if n.split(".")[0] in ("cloud_bridge", "devices", "lab")) == []
