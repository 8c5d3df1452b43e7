"""The package's import graph: no cycle in kdnb/ or benchmarks/, counting every import statement of a file
(module level, inside functions, under TYPE_CHECKING), and an engine that never imports its report layer."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kdnb", "benchmarks")


def _modules() -> dict[str, Path]:
    """Module name -> file, for every .py file of the packages (a package's __init__ is the package)."""
    out = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(name: str, file: Path, known: set[str]) -> set[str]:
    """The known modules that ``file`` (module ``name``) imports anywhere in it."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..y import z
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]  # a name may be a submodule
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import kdnb.report.paper` names kdnb.report.paper itself
                t = t.rpartition(".")[0] if "." in t and t.split(".")[0] in PACKAGES else ""
            if t and t != name:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, f, set(mods)) for name, f in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_parser_sees_every_kind_of_import():
    g = graph()
    assert "kdnb.methods" in g["kdnb.config"]  # module level
    assert "kdnb.study" in g["kdnb.cli"] and "kdnb.train" in g["kdnb.study"]  # inside functions
    assert "kdnb.attacks" in g["kdnb.methods"] and "kdnb" in g["kdnb.methods"]  # from kdnb import attacks
    assert "benchmarks.conventional" in g["benchmarks.bench"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_kdnb_or_benchmarks():
    assert cycles(graph()) == []


def test_the_engine_never_imports_the_report_layer():
    g = graph()
    engine = [m for m in g if m.startswith("kdnb") and not m.startswith("kdnb.report")]
    assert len(engine) >= 12
    bad = {m: sorted(t for t in g[m] if t.startswith("kdnb.report")) for m in engine}
    assert not {m: t for m, t in bad.items() if t}
