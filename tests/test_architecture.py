"""The shape of the package, read from its source with ``ast``.

No import cycle (imports under ``TYPE_CHECKING`` and inside functions count too), the request
path never imports the sending half, each public class name has one meaning, and every
exception lives in one hierarchy in ``errors.py``, exported from ``webhook_kit``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType

import pytest

import webhook_kit
from webhook_kit.errors import WebhookKitError

PACKAGE = Path(webhook_kit.__file__).parent

#: The modules of the request path (DESIGN.md's steps, the pipeline composing them, the Flask
#: glue): nothing they import, directly or not, may be a module of the sending half.
REQUEST_PATH = (
    "webhook_kit.pipeline",
    "webhook_kit.views",
    "webhook_kit.incoming",
    "webhook_kit.signature",
    "webhook_kit.events",
    "webhook_kit.once",
    "webhook_kit.ledger",
    "webhook_kit.conversation",
    "webhook_kit.routing",
    "webhook_kit.twiml",
)
SENDING = frozenset({"webhook_kit.sending"})


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module under ``root`` by dotted name (a package by its ``__init__.py``)."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The known modules ``name`` imports anywhere in its source: at the top, inside functions,
    under ``if TYPE_CHECKING:``. ``from package import name`` counts the submodule if there is
    one of that name, else the package itself."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in known else source)
    return {module for module in found if module in known and module != name}


def import_graph(root: Path = PACKAGE, package: str = "webhook_kit") -> dict[str, set[str]]:
    known = modules(root, package)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
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
    return sorted(found)


def reachable(graph: Mapping[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_the_import_graph_has_no_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_check_sees_type_checking_and_function_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .. import b\n")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import thing\n"
    )
    (package / "b.py").write_text("def f():\n    from . import a\n")
    (package / "c.py").write_text("from .sub import d\n")
    graph = import_graph(package, "pkg")
    assert graph["pkg.sub"] == {"pkg.b"} and graph["pkg.c"] == {"pkg.sub"}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_the_request_path_does_not_import_the_sending_half() -> None:
    graph = import_graph()
    assert set(REQUEST_PATH) <= set(graph)
    for module in REQUEST_PATH:
        assert not reachable(graph, module) & SENDING, module


def test_the_emulators_blueprints_live_in_its_http_package() -> None:
    """The emulator's models stay plain: only ``emulator/http/`` translates HTTP to them."""
    emulator = PACKAGE / "emulator"
    blueprints = [
        name
        for name, path in modules(emulator, "webhook_kit.emulator").items()
        if "Blueprint(" in path.read_text() and path.parent != emulator / "http"
    ]
    assert blueprints == []


def test_no_public_class_name_is_defined_twice() -> None:
    defined: dict[str, list[str]] = {}
    for name, path in modules(PACKAGE, "webhook_kit").items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                defined.setdefault(node.name, []).append(name)
    assert {name: where for name, where in defined.items() if len(where) > 1} == {}


def test_no_module_reaches_into_another_modules_private_names() -> None:
    known = modules(PACKAGE, "webhook_kit")
    reaching: list[str] = []
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        aliases: set[str] = set()  # local names bound to modules of the package
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                for alias in node.names:
                    if f"{source}.{alias.name}" in known:
                        aliases.add(alias.asname or alias.name)
                    elif source in known and _private(alias.name):
                        reaching.append(f"{name}: from {source} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in known and alias.asname:
                        aliases.add(alias.asname)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _private(node.attr)
            ):
                reaching.append(f"{name}: {node.value.id}.{node.attr}")
    assert reaching == []


def test_fork_and_exit_hooks_are_registered_only_in_process_py() -> None:
    """Per-process machinery lives in one place: webhook_kit.process (its Process.at_fork
    and Process.service); nothing else calls os.register_at_fork or atexit.register."""
    registering: list[str] = []
    for name, path in modules(PACKAGE, "webhook_kit").items():
        if name == "webhook_kit.process":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and (
                node.attr == "register_at_fork"
                or (node.attr == "register" and getattr(node.value, "id", "") == "atexit")
            ):
                registering.append(f"{name}:{node.lineno}")
            elif isinstance(node, ast.ImportFrom) and node.module in ("atexit", "os"):
                names = {alias.name for alias in node.names}
                if names & {"register", "register_at_fork"}:
                    registering.append(f"{name}:{node.lineno}")
    assert registering == []


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _all_modules() -> Iterator[ModuleType]:
    yield webhook_kit
    for info in pkgutil.walk_packages(webhook_kit.__path__, "webhook_kit."):
        yield importlib.import_module(info.name)


def _exceptions(module: ModuleType) -> Iterator[type[BaseException]]:
    for _, value in inspect.getmembers(module, inspect.isclass):
        if issubclass(value, BaseException) and value.__module__ == module.__name__:
            yield value


def test_every_exported_name_ending_in_error_is_an_exception() -> None:
    for module in _all_modules():
        exported = getattr(module, "__all__", None) or [
            name for name in vars(module) if not name.startswith("_")
        ]
        for name in exported:
            value = getattr(module, name)
            if name.endswith("Error") and inspect.isclass(value):
                assert issubclass(value, Exception), f"{module.__name__}.{name}"
            else:
                assert not name.endswith("Error"), f"{module.__name__}.{name} is no class"


def test_every_exception_is_in_errors_py_in_one_hierarchy_and_exported() -> None:
    for module in _all_modules():
        for error in _exceptions(module):
            if error.__name__.startswith("_"):  # private control flow of one module
                continue
            assert issubclass(error, WebhookKitError), error
            if module.__name__.startswith("webhook_kit.emulator"):
                # The emulator is its own small house: its errors are Twilio's REST answers
                # (webhook_kit.emulator.ApiError and kin), still under WebhookKitError.
                continue
            assert module.__name__ == "webhook_kit.errors", f"{error} is not in errors.py"
            assert error.__name__ in webhook_kit.__all__, f"{error.__name__} is not exported"
            assert getattr(webhook_kit, error.__name__) is error


@pytest.mark.parametrize("name", webhook_kit.__all__)
def test_every_exported_name_is_documented(name: str) -> None:
    value = getattr(webhook_kit, name)
    doc = value.__doc__ or ""  # a class's own: __doc__ is not inherited
    assert doc.strip(), name
    assert not doc.startswith(f"{name}("), f"{name} has only the docstring dataclass made up"


def test_former_names_still_resolve_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="DeliveryFailure"):
        assert webhook_kit.DeliveryError is webhook_kit.DeliveryFailure  # type: ignore[attr-defined]
    with pytest.warns(DeprecationWarning, match="InboundMedia"):
        assert webhook_kit.Media is webhook_kit.InboundMedia  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        webhook_kit.Nothing  # type: ignore[attr-defined]  # noqa: B018
