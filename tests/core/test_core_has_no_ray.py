import ast
import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import acousticsense

ROOT = Path(__file__).resolve().parents[2]
STUB = ROOT / "acousticsense" / "__init__.pyi"


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def _stub_exports() -> dict[str, str]:
    """Public name -> defining module, read from the stub the way a type checker reads it."""
    exports: dict[str, str] = {}
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                assert alias.name not in exports, f"{alias.name} is exported twice"
                assert alias.asname == alias.name, f"write `{alias.name} as {alias.name}` (a stub's re-export)"
                exports[alias.name] = f"acousticsense.{node.module}"
    return exports


def test_importing_every_core_module_does_not_import_ray():
    code = (
        "import importlib, pkgutil, sys, acousticsense\n"
        "for m in pkgutil.walk_packages(acousticsense.__path__, 'acousticsense.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(len(sys.modules) > 100, 'ray' in sys.modules)"
    )
    assert _run(code) == "True False"


def test_every_name_in_the_stub_is_exported_and_is_the_defining_modules_object():
    exports = _stub_exports()
    assert sorted(acousticsense.__all__) == sorted(exports)
    for name, module in exports.items():
        assert getattr(acousticsense, name) is getattr(sys.modules[module], name), name


def test_unknown_names_raise_attribute_error():
    try:
        acousticsense.log_mel  # noqa: B018  (deleted: it only rebuilt the LogMel module on every call)
    except AttributeError:
        return
    raise AssertionError("acousticsense.log_mel still resolves")


def test_the_stub_ships_with_the_package():
    # Without the .pyi in the wheel, attach_stub raises at `import acousticsense` on every installed machine.
    # (a regex: tomllib is 3.11+, the project supports 3.10)
    line = re.search(r'^"acousticsense" = \[(.*)\]$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert line, "pyproject.toml has no package-data line for acousticsense"
    patterns = re.findall(r'"([^"]+)"', line.group(1))
    assert any(fnmatch.fnmatch("__init__.pyi", pattern) for pattern in patterns), patterns


def test_storage_helpers_import_without_torch():
    # The batch writer's worker imports only these; torch would add ~1 s to its start on a busy node.
    assert _run("import sys, acousticsense.storage; print('torch' in sys.modules)") == "False"


def test_the_package_itself_imports_without_torch():
    # The public names resolve lazily: importing the package (and reading a storage helper) stays light.
    code = "import sys, acousticsense; acousticsense.join_uri; print('torch' in sys.modules, 'ray' in sys.modules)"
    assert _run(code) == "False False"
