"""Build steps pyproject.toml cannot express: the cffi transport and the mock device library."""

from glob import glob

from setuptools import Extension, setup

# The mock is a plain shared object loaded with LD_PRELOAD, never imported; setuptools
# builds it as an extension only so that it lands inside the package next to its users.
mock = Extension(
    "xenprobe._mockxen",
    sources=sorted(glob("native/mock/*.c")),
    include_dirs=["native/mock"],
    extra_compile_args=["-std=gnu11", "-Wall", "-Wextra", "-O2"],
)

setup(
    cffi_modules=["native/build_transport.py:ffi"],
    ext_modules=[mock],
)
