"""Build steps pyproject.toml cannot express: the cffi transport and the mock device library."""

import sys
from glob import glob
from pathlib import Path

from setuptools import Extension, setup

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
)
