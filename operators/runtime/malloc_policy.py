"""The C allocator policy of a long-running worker: give freed heap memory back to the system.

Windows aligned on the clock close together: at each boundary every key with an open window
emits at once, and the burst's larger objects (over 512 B Python leaves to the C allocator: JSON
bodies, lists, Bytewax's Rust buffers) come from glibc's heap. Once the burst is written they
are free, but glibc only returns memory from the top of its heap, and the state made after the
burst sits above them: the freed pages stay in the process. Measured on a live shipment stream
(`benchmarks/state_memory.py`), glibc held 110-250 MB free for 20-30 MB in use, and held more
after a larger burst.

`apply` starts one daemon thread per process that calls glibc's `malloc_trim(0)` every
`interval` seconds: it returns the free pages inside the heap as well (`madvise`), a few
milliseconds for a heap of hundreds of MB, while the allocator's arenas stay locked. Where the C
library is not glibc (musl, macOS) nothing is started.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import threading
import time
from collections.abc import Callable
from typing import Optional

Trim = Callable[[], int]


def glibc_trim() -> Optional[Trim]:
    """glibc's `malloc_trim(0)`, or None where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: int(trim(0))


class Trimmer:
    """Calls `trim` every `interval` seconds on a daemon thread until `stop()`."""

    def __init__(self, trim: Trim, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"the trim interval must be positive, not {interval}")
        self.trim = trim
        self.interval = interval
        self.trims = 0
        """Trims made so far."""
        self.released = 0
        """Trims that gave memory back (`malloc_trim` returned 1)."""
        self.seconds = 0.0
        """Time spent in `trim`, all trims together."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="surgeflow-malloc-trim", daemon=True)

    def start(self) -> Trimmer:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()

    def run_once(self) -> None:
        started = time.perf_counter()
        self.released += 1 if self.trim() else 0
        self.seconds += time.perf_counter() - started
        self.trims += 1


_TRIMMER: Optional[Trimmer] = None
_LOCK = threading.Lock()


def apply(interval: float, trim: Optional[Trim] = None) -> Optional[Trimmer]:
    """Trim the C heap every `interval` seconds (0 turns the policy off); the process's trimmer,
    or None when it is off or the C library is not glibc. Call it once the flow is built: a later
    call replaces the trimmer with one of the new interval. `trim` replaces glibc's (tests)."""
    global _TRIMMER
    with _LOCK:
        if _TRIMMER is not None:
            _TRIMMER.stop()
            _TRIMMER = None
        if interval <= 0:
            return None
        found = trim or glibc_trim()
        if found is None:
            return None
        _TRIMMER = Trimmer(found, interval).start()
        return _TRIMMER


def current() -> Optional[Trimmer]:
    """The process's running trimmer, if any."""
    return _TRIMMER
