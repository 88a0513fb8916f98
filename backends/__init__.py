"""Engines: model loading, inference and training (installed as pocketsleep.backends).

Importing anything from here first picks up a fast BLAS for MLX on Linux CPUs (see
cpu_blas.py) and keeps MLX's compiled kernels in a folder only this user can write
(kernel_cache.py): both must happen before mlx is first imported, and every MLX
module of pocketsleep lives in this package.
"""

from .cpu_blas import enable_fast_blas as _enable_fast_blas
from .kernel_cache import secure_kernel_cache as _secure_kernel_cache

_secure_kernel_cache()
_enable_fast_blas()
