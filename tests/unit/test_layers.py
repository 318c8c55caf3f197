"""The shape of the package: imports point down the layers, and the module map is complete.

Layers, bottom to top (docs/development.md):
kernel → profile → policy → box → engine → placement → access → ops → ui → cli.
A module may import its own layer and the layers below it, never one above. Every import
counts, including those under TYPE_CHECKING and inside functions: a lazy import upward is
still a dependency upward.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import devbox

PACKAGE = Path(devbox.__file__).parent
ROOT = PACKAGE.parent
LAYERS = ["kernel", "profile", "policy", "box", "engine", "placement", "access", "ops", "ui", "cli"]
# The backends' own modules: only the engine package itself (connect) may reach into them.
BACKENDS = ("devbox.engine.docker",)


def layer_of(module: str) -> str:
    """The layer a dotted module name belongs to (`devbox.x` at the top is the kernel)."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in LAYERS:
        return parts[1]
    if parts[1:] == ["__main__"]:
        return "cli"  # `python -m devbox` is an entry point like the console script
    return "kernel"


def module_name(path: Path, root: Path) -> str:
    """The dotted name of a file inside the package under `root`."""
    relative = path.relative_to(root).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, module) for every devbox module the file imports, anywhere in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from devbox.ops import lifecycle` imports devbox.ops.lifecycle: name the module.
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                as_path = root / candidate.replace(".", "/")
                is_module = as_path.with_suffix(".py").is_file() or (as_path / "__init__.py").is_file()
                found.append((node.lineno, candidate if is_module else node.module))
    return [(line, name) for line, name in found if name == "devbox" or name.startswith("devbox.")]


def wrong_edges(package: Path) -> list[str]:
    """Every import in `package` that points up the layers or into a backend from outside."""
    root = package.parent
    problems = []
    for path in sorted(package.rglob("*.py")):
        importer = module_name(path, root)
        rank = LAYERS.index(layer_of(importer))
        for line, imported in imported_modules(path, root):
            where = f"{path.relative_to(root)}:{line}"
            if LAYERS.index(layer_of(imported)) > rank:
                problems.append(
                    f"{where}: {importer} ({layer_of(importer)}) imports {imported} ({layer_of(imported)})"
                )
            for backend in BACKENDS:
                inside = importer == backend or importer.startswith(backend + ".")
                reaches = imported == backend or imported.startswith(backend + ".")
                if reaches and not inside and importer != "devbox.engine":
                    problems.append(f"{where}: {importer} reaches into the backend {imported}")
    return problems


def test_every_import_points_down_the_layers() -> None:
    assert wrong_edges(PACKAGE) == []


def test_the_layer_check_catches_an_upward_and_a_backend_import(tmp_path: Path) -> None:
    # The same walk over a planted package: proves the check above can fail.
    planted = tmp_path / "devbox"
    (planted / "profile").mkdir(parents=True)
    (planted / "ops").mkdir()
    (planted / "profile" / "loader.py").write_text("from devbox.ops import lifecycle\n")
    (planted / "ops" / "lifecycle.py").write_text("from devbox.engine.docker import api\n")
    (planted / "ops" / "fine.py").write_text("from devbox.profile import loader\n")
    assert wrong_edges(planted) == [
        "devbox/ops/lifecycle.py:1: devbox.ops.lifecycle reaches into the backend devbox.engine.docker",
        "devbox/profile/loader.py:1: devbox.profile.loader (profile) imports devbox.ops.lifecycle (ops)",
    ]


def documented_modules(text: str) -> set[str]:
    """Module paths (relative to devbox/) in the ``` block under '## Layout' that starts `devbox/`.

    The block is a tree: a line `name/` opens a folder for the lines indented below it, and
    each `x.py` at the start of a line (several may share one: `a.py, b.py`) is a module there.
    """
    blocks = text.split("## Layout", 1)[1].split("```")[1::2]
    block = next((b for b in blocks if b.strip().startswith("devbox/")), "")
    names: set[str] = set()
    folders: list[tuple[int, str]] = []  # (indent, folder) of the folders we are inside
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        while folders and folders[-1][0] >= indent:
            folders.pop()
        head = line.strip().split("  ", 1)[0]  # the names, before the description
        prefix = "".join(folder for _, folder in folders[1:])  # the first folder is devbox/ itself
        if head.endswith("/"):
            folders.append((indent, head))
            continue
        names.update(prefix + name.strip() for name in head.split(",") if name.strip().endswith(".py"))
    return names


def missing_from_map(package: Path, doc: str) -> list[str]:
    """Modules in the package that the module map does not name (empty __init__.py files excepted)."""
    named = documented_modules(doc)
    missing = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if path.name == "__init__.py" and not path.read_text(encoding="utf-8").strip():
            continue
        if relative not in named:
            missing.append(relative)
    return missing


def test_the_module_map_names_every_module() -> None:
    doc = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    assert missing_from_map(PACKAGE, doc) == []


def test_the_module_map_check_catches_a_missing_module(tmp_path: Path) -> None:
    planted = tmp_path / "devbox"
    (planted / "ops").mkdir(parents=True)
    (planted / "ops" / "__init__.py").write_text("")
    (planted / "ops" / "lifecycle.py").write_text("")
    (planted / "ops" / "secret.py").write_text("")
    (planted / "errors.py").write_text("")
    doc = "## Layout\n\n```\nkernel → ops\n```\n\n```\ndevbox/\n  errors.py   the errors\n"
    doc += "  ops/\n    lifecycle.py  up\n```\n"
    assert missing_from_map(planted, doc) == ["ops/secret.py"]


def test_loading_profiles_imports_no_engine_and_no_terminal_library() -> None:
    # The profile layer is what render, completion and the fuzz test lean on: it must stay
    # free of the engine, of docker-py and of the terminal libraries (they cost startup time).
    code = "import sys, devbox.profile.loader; print('\\n'.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    heavy = [m for m in loaded if m.split(".")[0] in ("rich", "typer", "click", "docker", "paramiko")]
    engine = [m for m in loaded if m.startswith(("devbox.engine", "devbox.ops", "devbox.cli", "devbox.ui"))]
    assert heavy == [] and engine == []
