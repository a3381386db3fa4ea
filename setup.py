"""Build of the optional C speed-up (Linux only); everything else is in pyproject.toml.

``optional=True``: without a C compiler the build goes on without it, and
place() uses its pure-Python loop (same behaviour, slower on many small files).
"""

import sys

from setuptools import Extension, setup

ext_modules = []
if sys.platform.startswith("linux"):
    ext_modules.append(
        Extension(
            "linkstrategy._speedups",
            ["src/linkstrategy/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        )
    )

setup(ext_modules=ext_modules)
