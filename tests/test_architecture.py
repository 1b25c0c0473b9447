"""The package's shape, read from its source: layers that import only downwards, no import circle,
no function longer than a screen (docs/ARCHITECTURE.md)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "paddle_palm"

#: Longest function body, in lines, docstring aside (data tables are module constants, not functions).
MAX_FUNCTION_LINES = 60


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name, modules):
    """The module an import of ``name`` loads (``a.b.c`` may name a function of ``a.b``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path, modules, module_level_only=True):
    """The paddle_palm modules ``path`` imports at module level (or anywhere)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("paddle_palm") and not node.level:
            for alias in node.names:
                target = _resolve(f"{node.module}.{alias.name}", modules)
                if target:
                    found.add(target)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("paddle_palm"):
                    target = _resolve(alias.name, modules)
                    if target:
                        found.add(target)
    return found


def _cycles(graph):
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, groups, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def _graph(module_level_only):
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        # A package's __init__ importing its own submodules is how a package presents itself, not a circle.
        graph[name] = {t for t in _imports(path, modules, module_level_only)
                       if t != name and not (path.name == "__init__.py" and t.startswith(name + "."))}
    return graph


@pytest.mark.parametrize("module_level_only", [True, False], ids=["module level", "inside functions too"])
def test_no_import_circle(module_level_only):
    assert _cycles(_graph(module_level_only)) == []


def test_models_and_data_import_nothing_from_the_engine_or_the_tools():
    graph = _graph(module_level_only=False)
    for name, targets in graph.items():
        if name.startswith(("paddle_palm.models", "paddle_palm.data")):
            upward = sorted(t for t in targets if t.startswith(("paddle_palm.engine", "paddle_palm.commands",
                                                                  "paddle_palm.app")))
            assert upward == [], f"{name} imports {upward}"


def test_no_library_module_imports_the_commands():
    graph = _graph(module_level_only=False)
    for name, targets in graph.items():
        if not name.startswith(("paddle_palm.commands", "paddle_palm.app")):
            assert not any(t.startswith("paddle_palm.commands") for t in targets), name


def _long_functions():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                first = body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                        and isinstance(first.value.value, str):
                    body = body[1:]
                if body and body[-1].end_lineno - body[0].lineno + 1 > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}")
    return found


def test_no_function_longer_than_a_screen():
    assert _long_functions() == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("name", ["paddle_palm.engine.model_settings", "paddle_palm.engine.evaluate"])
def test_the_import_reader_sees_module_level_imports(name):
    modules = _modules()
    assert "paddle_palm.metrics" in _imports(modules[name], modules)
