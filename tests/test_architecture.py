"""The house's shape (../shared/ARCHITECTURE.md): imports point one way, read from the source.

Each module of `posterior_diffusion` sits on a floor; it may import its own floor and those below,
never one above, and never a private name (`_x`) from another module. `forward_models` imports
nothing from `posterior_diffusion`, and no two modules import each other, however indirectly.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest floor first; a module's floor is that of its longest listed prefix.
FLOORS = [
    ["posterior_diffusion.rng", "posterior_diffusion.schedules", "posterior_diffusion.linalg",
     "posterior_diffusion.masks", "posterior_diffusion.defaults", "posterior_diffusion.io",
     "posterior_diffusion.provenance", "posterior_diffusion.distributed",
     "posterior_diffusion.version", "posterior_diffusion.diagnostics", "posterior_diffusion.data",
     "posterior_diffusion.likelihood", "posterior_diffusion.sky"],
    ["posterior_diffusion.priors", "posterior_diffusion.networks",
     "posterior_diffusion.simulators", "posterior_diffusion.prior_density"],
    ["posterior_diffusion.samplers", "posterior_diffusion.memory", "posterior_diffusion.references",
     "posterior_diffusion.model_check", "posterior_diffusion.training"],
    ["posterior_diffusion.reconstruction", "posterior_diffusion.observing",
     "posterior_diffusion.simulated_fields", "posterior_diffusion.model_check_file",
     "posterior_diffusion.catalog_observation", "posterior_diffusion.padding",
     "posterior_diffusion.peak_catalog", "posterior_diffusion.survey"],
    ["posterior_diffusion.calibration", "posterior_diffusion.reporting"],
    ["posterior_diffusion.api", "posterior_diffusion"],
    ["posterior_diffusion.cli"],
]  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str | None = None) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every import in the file (module `name`), top level or not."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = (
                package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            )
            target = ".".join([*base, node.module] if node.module else base)
            out.append((target, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
    return out


def floor(module: str) -> int:
    best, level = -1, None
    for i, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    if level is None:
        raise AssertionError(f"{module} has no floor in tests/test_architecture.py")
    return level


SOURCES = sorted((ROOT / "posterior_diffusion").rglob("*.py"))


def own_imports(path: Path, name: str | None = None) -> list[tuple[str, list[str]]]:
    return [(m, n) for m, n in imports(path, name) if m.split(".")[0] == "posterior_diffusion"]


def resolve(module: str, names: list[str]) -> list[str]:
    """The modules an import reaches: `from package import submodule` names the submodule."""
    out = [module]
    for name in names:
        candidate = f"{module}.{name}"
        path = ROOT / Path(*candidate.split("."))
        if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
            out.append(candidate)
    return out


def upward_imports(path: Path, here: str) -> list[str]:
    return [
        f"{here} (floor {floor(here)}) imports {target} ({floor(target)})"
        for module, names in own_imports(path, here)
        for target in resolve(module, names)
        if floor(target) > floor(here)
    ]


def test_no_module_imports_a_floor_above_it():
    wrong = [line for path in SOURCES for line in upward_imports(path, module_name(path))]
    assert not wrong, "\n".join(wrong)


def test_an_upward_import_is_seen(tmp_path):
    """The control: a prior module importing the CLI is caught."""
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from posterior_diffusion.cli import main\n")
    assert upward_imports(fake, "posterior_diffusion.priors.fake")


def test_no_private_name_crosses_modules():
    wrong = [
        f"{module_name(path)} imports {module}.{name}"
        for path in SOURCES
        for module, names in own_imports(path)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not wrong, "\n".join(wrong)


def test_forward_models_import_nothing_from_posterior_diffusion():
    for path in sorted((ROOT / "forward_models").rglob("*.py")):
        for module, _ in imports(path):
            assert not module.startswith("posterior_diffusion"), (path.name, module)


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Import cycles of a module graph, by depth-first search."""
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_a_cycle_is_seen():
    """The control: two modules importing each other through a third are caught."""
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a -> b -> c -> a"]


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        here = module_name(path)
        graph[here] = {t for m, n in own_imports(path) for t in resolve(m, n) if t != here}
    # A package's __init__ re-exports its modules: edges into the package from inside it are
    # the package importing its own parts, not a cycle of dependencies.
    for package in [m for m in graph if (ROOT / Path(*m.split(".")) / "__init__.py").exists()]:
        graph[package] = {t for t in graph[package] if not t.startswith(package + ".")}
    cycles = find_cycles(graph)
    assert not cycles, "\n".join(cycles)


def compares_model_names(text: str, names: list[str]) -> list[str]:
    """`model.name == "lensing"`-style tests of a forward model's name (the registry's job): a
    registered name compared with an expression that mentions a forward model (not, e.g., a
    reference problem's `model_kind` or an E/B source called "noise")."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            named = [s.value for s in sides if isinstance(s, ast.Constant) and s.value in names]
            others = " ".join(ast.unparse(s) for s in sides if not isinstance(s, ast.Constant))
            if named and ("forward_model" in others or "model.name" in others):
                found += named
    return found


def test_only_the_registry_knows_models_by_name():
    from forward_models.registry import available_forward_models

    names = available_forward_models()
    assert compares_model_names('if model.name == "lensing":\n    pass', names) == ["lensing"]
    wrong = {module_name(path): compares_model_names(path.read_text(), names) for path in SOURCES}
    assert not {k: v for k, v in wrong.items() if v}


# Import name -> distribution name, for the packages whose names differ or that are allowed.
DISTRIBUTIONS = {"yaml": "pyyaml"}


def test_every_third_party_import_of_the_packages_is_a_declared_dependency():
    """`pip install -e .` (the README's main command) must bring everything the packages import:
    a module only a dev extra brought once broke that command on a fresh clone (astropy)."""
    import re
    import sys

    # The [project] dependencies list, read without tomllib (Python 3.10 has none).
    block = re.search(
        r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.S | re.M
    )
    entries = re.findall(r'^\s*"([^"]+)"', block.group(1), re.M)
    declared = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower() for d in entries}
    assert {"torch", "numpy", "astropy"} <= declared
    own = {"posterior_diffusion", "forward_models"}
    missing = set()
    for path in [*SOURCES, *sorted((ROOT / "forward_models").rglob("*.py"))]:
        for module, _ in imports(path, module_name(path)):
            top = module.split(".")[0]
            if not top or top in own or top in sys.stdlib_module_names:
                continue
            if DISTRIBUTIONS.get(top, top).lower() not in declared:
                missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert not missing, sorted(missing)
