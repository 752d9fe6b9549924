import subprocess
import sys

import acousticsense


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_importing_every_core_module_does_not_import_ray():
    code = (
        "import importlib, pkgutil, sys, acousticsense\n"
        "for m in pkgutil.walk_packages(acousticsense.__path__, 'acousticsense.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(len(sys.modules) > 100, 'ray' in sys.modules)"
    )
    assert _run(code) == "True False"


def test_public_names_are_unique_and_importable():
    assert len(acousticsense.__all__) == len(set(acousticsense.__all__))
    assert sorted(acousticsense.__all__) == sorted(acousticsense._EXPORTS)
    for name in acousticsense.__all__:
        assert getattr(acousticsense, name) is getattr(sys.modules[acousticsense._EXPORTS[name]], name), name


def test_storage_helpers_import_without_torch():
    # The batch writer's worker imports only these; torch would add ~1 s to its start on a busy node.
    assert _run("import sys, acousticsense.storage; print('torch' in sys.modules)") == "False"
