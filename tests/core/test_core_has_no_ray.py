import subprocess
import sys

import acousticsense


def test_importing_the_core_does_not_import_ray():
    code = "import sys, acousticsense, acousticsense.extract, acousticsense.demo.corpus; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_names_are_unique_and_importable():
    assert len(acousticsense.__all__) == len(set(acousticsense.__all__))
    for name in acousticsense.__all__:
        assert hasattr(acousticsense, name), name
