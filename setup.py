"""The one compiled part of progvc: the portable context model's kernels (progvc/models/exact_kernels.c).

Everything else is in pyproject.toml. The extension is optional: without a C compiler the install
still succeeds and the portable path runs on tensor operations, with the same values (slower).
-ffp-contract=off keeps the compiler from fusing a product and a sum into one FMA; nothing here
may be built with -ffast-math (see the C file's header).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "progvc.models._exact_kernels",
            sources=["progvc/models/exact_kernels.c"],
            extra_compile_args=["-O3", "-std=c11", "-ffp-contract=off", "-fno-fast-math"],
            optional=True,
        )
    ]
)
