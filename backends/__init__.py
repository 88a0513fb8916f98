"""Engines: model loading, inference and training (installed as pocketsleep.backends).

Importing anything from here first picks up a fast BLAS for MLX on Linux CPUs (see
cpu_blas.py): it must happen before mlx is first imported, and every MLX module of
pocketsleep lives in this package.
"""

from .cpu_blas import enable_fast_blas as _enable_fast_blas

_enable_fast_blas()
