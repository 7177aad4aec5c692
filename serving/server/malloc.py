"""glibc's malloc, told to keep the serving process's resident memory flat.

glibc gives threads that contend for memory arenas of their own (up to 8 per core), each holding on
to what it once allocated. A server's decode threads make and drop many small images and arrays, and
each new arena showed up as a step of ~45 MB in `bench/soak.py`'s resident memory (+11–20 % over 600
requests, against its 10 % bound) that never came back; with 2 arenas the steps were gone. This is
what `MALLOC_ARENA_MAX=2` does, set from the settings at start-up, before the thread pools exist.
And a refused model version (a bundle read, then refused) leaves its tens of MB in the loading
thread's arena: `release_free_memory` hands free pages back to the OS after such an attempt.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["limit_malloc_arenas", "release_free_memory"]

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        return None


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's arenas at `arenas`; False where the C library is not glibc."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):  # musl, macOS: not glibc's malloc
        log.info("malloc arenas left as they are: the C library has no mallopt")
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """Free pages of every arena back to the OS (glibc's `malloc_trim`); False where there is none."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    return bool(libc.malloc_trim(0))
