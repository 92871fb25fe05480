"""The architecture in docs/architecture.md holds: layer contracts, no cycles, no private names shared."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import forewarn
from forewarn import _moved

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("resilience", "store", "learning", "scoring", "history", "orchestration")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("forewarn")


def _lint_imports() -> str:
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("lint-imports is missing: `make test` installs it with the dev extra (import-linter)")
    return found


class TestContracts:
    """The import-linter contracts in pyproject.toml are kept."""

    def test_every_contract_is_kept(self) -> None:
        """`lint-imports` finds no broken contract (layers, Prefect only in its layer, private modules)."""
        out = subprocess.run(
            [_lint_imports(), "--no-logo", "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "0 broken" in out.stdout

    def test_a_broken_layer_is_reported(self, tmp_path: Path) -> None:
        """A contract forbidding an import the code makes is reported as broken: the check can fail."""
        config = tmp_path / "contracts.toml"
        config.write_text(
            '[tool.importlinter]\nroot_package = "forewarn"\n\n'
            "[[tool.importlinter.contracts]]\n"
            'name = "the store may not import the records (it does)"\ntype = "forbidden"\n'
            'source_modules = ["forewarn.store"]\nforbidden_modules = ["forewarn.records"]\n'
        )
        out = subprocess.run(
            [_lint_imports(), "--no-logo", "--no-cache", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode != 0 and "BROKEN" in out.stdout


class TestImportGraph:
    """What the contracts cannot say: no cycles, no module leaning on the public face."""

    def test_no_module_imports_the_package_face(self, graph: grimp.ImportGraph) -> None:
        """Modules import each other, never ``forewarn/__init__`` (``__version__`` comes from ``_version``)."""
        assert graph.find_modules_that_directly_import("forewarn") == set()

    def test_no_import_cycle(self, graph: grimp.ImportGraph) -> None:
        """No two forewarn modules import each other, directly or through others."""
        modules = sorted(m for m in graph.modules if m.startswith("forewarn.") or m == "forewarn")
        cycles = []
        for module in modules:
            for imported in graph.find_modules_directly_imported_by(module):
                if imported in modules and imported != "forewarn" and module != "forewarn":
                    back = graph.find_shortest_chain(importer=imported, imported=module)
                    if back is not None:
                        cycles.append((module, *back))
        assert cycles == []

    def test_no_private_name_is_imported_from_another_module(self) -> None:
        """``from forewarn.x import _name`` appears nowhere in the library, flows/ or bench/."""
        offenders = []
        for folder in ("src/forewarn", "flows", "bench"):
            for path in sorted((ROOT / folder).rglob("*.py")):
                for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("forewarn"):
                        private = [
                            a.name
                            for a in node.names
                            if a.name.startswith("_")
                            and not a.name.endswith("__")
                            and not _is_module(f"{node.module}.{a.name}")  # a private module may be imported
                        ]
                        if private:
                            offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module} {private}")
        assert offenders == []


class TestLayout:
    """Each layer is a subpackage that says what it owns and what it may import."""

    @pytest.mark.parametrize("name", SUBPACKAGES)
    def test_subpackage_docstring_names_its_imports(self, name: str) -> None:
        module = importlib.import_module(f"forewarn.{name}")
        assert module.__doc__ and "May import" in module.__doc__ and "Example" in module.__doc__

    @pytest.mark.parametrize("name", SUBPACKAGES)
    def test_subpackage_exports_what_it_lists(self, name: str) -> None:
        module = importlib.import_module(f"forewarn.{name}")
        assert module.__all__ and all(hasattr(module, n) for n in module.__all__)

    def test_every_module_imports(self) -> None:
        """Every module of the tree imports on its own (no module is left behind by a move)."""
        names = [m.name for m in pkgutil.walk_packages(forewarn.__path__, "forewarn.") if m.name != "forewarn.__main__"]
        for name in names:
            importlib.import_module(name)
        assert {f"forewarn.{p}" for p in SUBPACKAGES} <= set(names)


class TestPublicFace:
    """``import forewarn`` offers every public name, including every error a user can catch."""

    def test_every_exported_name_resolves(self) -> None:
        assert all(getattr(forewarn, name) is not None for name in forewarn.__all__)

    @pytest.mark.parametrize(
        "name", ["CircuitOpenError", "StoreError", "ModelError", "FallbackError", "ConfigurationError"]
    )
    def test_errors_are_public_and_share_the_root(self, name: str) -> None:
        assert issubclass(getattr(forewarn, name), forewarn.ForewarnError)

    def test_set_testing_after_a_bare_import(self) -> None:
        """``forewarn.set_testing`` works after ``import forewarn`` alone (submodules load lazily)."""
        code = "import forewarn\nwith forewarn.set_testing(True):\n    print(forewarn.RetryPolicy().wait(3))\n"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "0.0"

    def test_hardening_beside_hardened(self) -> None:
        with forewarn.hardened(forewarn.Hardening(extra_attempts=1)) as hardening:
            assert hardening.extra_attempts == 1


class TestMovedPaths:
    """forewarn 0.1's flat module paths still import for one release, with a DeprecationWarning."""

    def test_old_paths_are_the_new_modules(self) -> None:
        """Each old path gives the very module at its new path, and warns once (a fresh interpreter)."""
        code = (
            "import importlib, warnings\n"
            "from forewarn._moved import MOVED\n"
            "for old, new in sorted(MOVED.items()):\n"
            "    with warnings.catch_warnings(record=True) as caught:\n"
            "        warnings.simplefilter('always')\n"
            "        module = importlib.import_module(old)\n"
            "    kinds = [w.category.__name__ for w in caught if old in str(w.message)]\n"
            "    print(old, module is importlib.import_module(new), module.__spec__.name == new, kinds)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        lines = out.stdout.splitlines()
        assert lines == [f"{old} True True ['DeprecationWarning']" for old in sorted(_moved.MOVED)]

    def test_unknown_path_still_fails(self) -> None:
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("forewarn.no_such_module")


def _is_module(name: str) -> bool:
    """``name`` is an importable module (``find_spec`` raises when the parent is a module, not a package)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
