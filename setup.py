"""Build of the optional C speed-up (Linux only); everything else is in pyproject.toml.

``optional=True``: without a C compiler the build goes on without it, and
place() uses its pure-Python loop (same behaviour, slower on many small files).

The extension uses only the stable ABI of Python 3.10 (``Py_LIMITED_API``), so the
wheel is tagged ``cp310-abi3`` and one build serves every CPython >= 3.10;
``tools/build-wheel.sh`` builds it and makes it a manylinux wheel.
"""

import sys

from setuptools import Extension, setup

LIMITED_API = ("Py_LIMITED_API", "0x030A0000")  # 3.10, the oldest Python we support

ext_modules = []
options = {}
if sys.platform.startswith("linux"):
    ext_modules.append(
        Extension(
            "linkstrategy._speedups",
            ["src/linkstrategy/_speedups.c"],
            optional=True,
            py_limited_api=True,
            define_macros=[LIMITED_API],
            # a function outside the limited API is undeclared: fail, not a .so that
            # cannot load
            extra_compile_args=[
                "-O2",
                "-Wall",
                "-Wextra",
                "-Wno-missing-field-initializers",
                "-Werror=implicit-function-declaration",
            ],
        )
    )
    options["bdist_wheel"] = {"py_limited_api": "cp310"}

setup(ext_modules=ext_modules, options=options)
