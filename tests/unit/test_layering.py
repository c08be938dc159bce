"""docs/architecture.md's rule: no upward imports between packages, no import cycles."""
import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "kgdbstub"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


def ranks() -> dict[str, int]:
    """Package -> rank, read from the table in docs/architecture.md."""
    table = {}
    for rank, names in re.findall(r"^\| (\d) \| (.+?) \|", ARCHITECTURE.read_text(), re.M):
        for name in re.findall(r"`(\w+)`", names):
            table[name] = int(rank)
    return table


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class _Imports(ast.NodeVisitor):
    """The kgdbstub names a module imports when it runs (not under `if TYPE_CHECKING:`)."""

    def __init__(self, path: Path):
        here = module_name(path).split(".")
        self.package = here if path.name == "__init__.py" else here[:-1]
        self.found: set[str] = set()

    def visit_If(self, node):
        if "TYPE_CHECKING" not in ast.unparse(node.test):
            self.generic_visit(node)

    def visit_ImportFrom(self, node):
        if node.level:
            base = self.package[: len(self.package) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        self.found.add(target)
        self.found.update(f"{target}.{alias.name}" for alias in node.names)

    def visit_Import(self, node):
        self.found.update(alias.name for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Module -> the kgdbstub modules it imports at run time."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        visitor = _Imports(path)
        visitor.visit(ast.parse(path.read_text()))
        graph[module_name(path)] = visitor.found
    # `from . import x` names the package itself as well as x: only x counts.
    return {m: {t for t in targets if t in graph and t not in (m, "kgdbstub")} for m, targets in graph.items()}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_package_has_a_rank():
    table = ranks()
    packages = {package_of(m) for m in import_graph()} - {"", "__main__"}
    assert packages <= set(table), f"not in docs/architecture.md: {sorted(packages - set(table))}"


def test_no_package_imports_one_at_or_above_its_rank():
    table = ranks()
    wrong = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if (source := package_of(module)) in table
        for target in targets
        if (destination := package_of(target)) != source and table.get(destination, 99) >= table[source]
    ]
    assert not wrong, "imports that go up or sideways:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(target):] + [target]))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
