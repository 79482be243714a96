# SPDX-License-Identifier: GPL-2.0-only
"""Build steps pyproject.toml cannot express: the cffi transport, the mock device library,
and the source revision stamped into the package (xenprobe/support/revision.py)."""

import importlib.util
import sys
from glob import glob
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent


def _stamp(package_dir: Path) -> None:
    # Loaded by path: the xenprobe package itself may not be importable while building.
    spec = importlib.util.spec_from_file_location("_xenprobe_revision",
                                                  ROOT / "xenprobe" / "support" / "revision.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.stamp(ROOT, package_dir)


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        _stamp(Path(self.build_lib) / "xenprobe")


class Sdist(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        _stamp(Path(base_dir) / "xenprobe")


# setuptools runs this file with the project root as the working directory, but does not
# put it on sys.path; the compile flags live in one place, the cffi build script.
sys.path.insert(0, str(Path(__file__).resolve().parent / "native"))
from build_transport import compile_args

# The mock is a plain shared object loaded with LD_PRELOAD, never imported; setuptools
# builds it as an extension only so that it lands inside the package next to its users.
mock = Extension(
    "xenprobe._mockxen",
    sources=sorted(glob("native/mock/*.c")),
    include_dirs=["native/mock"],
    extra_compile_args=compile_args(),
)

setup(
    cffi_modules=["native/build_transport.py:ffi"],
    ext_modules=[mock],
    cmdclass={"build_py": BuildPy, "sdist": Sdist},
)
