"""What every method's run is measured with: the same seeds, and peak memory."""

from __future__ import annotations

import random
import sys


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and (when installed) MLX: same seed, same run."""
    import importlib.util

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "mlx.core" in sys.modules or importlib.util.find_spec("mlx") is not None:
        try:
            import pocketsleep.backends  # noqa: F401  (fast BLAS before mlx loads)
            import mlx.core as mx
        except ImportError:  # pragma: no cover - a broken mlx install
            return
        mx.random.seed(seed)


class PeakMemory:
    """Peak resident memory of this process during a stretch of work (one night).

    On Linux, writing "5" to /proc/self/clear_refs resets the high-water mark that
    /proc/self/status reports as VmHWM. Elsewhere (or where that is refused) the
    figure is getrusage's peak of the whole process so far, which cannot be reset.
    """

    def __init__(self) -> None:
        self.source = "VmHWM" if self._status_kb("VmHWM") is not None else "getrusage"

    def reset(self) -> None:
        if self.source != "VmHWM":
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.source = "getrusage"

    def peak_mb(self) -> float:
        if self.source == "VmHWM":
            kb = self._status_kb("VmHWM")
            if kb is not None:
                return kb / 1024
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # kilobytes on Linux, bytes on macOS
        return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024

    @staticmethod
    def _status_kb(key: str) -> int | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        return None
