"""Interpreter settings for a long-running server process."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def garbage_collection(gen0_threshold: int) -> Iterator[None]:
    """Collect the young generation after ``gen0_threshold`` net allocations instead of 700.

    CPython collects the young generation whenever allocations of container objects outrun
    deallocations by the threshold, and every tenth young collection moves on to the older
    generations. Under uvicorn each request leaves a few objects for the collector, so at
    the default threshold a busy worker collects many times a second, older generations
    included, to find little garbage: reference counting frees most of it at once. With a
    higher threshold it collects rarely and serves more cached reads per second
    (bench/README.md has the counts and the measurement). The price is a few MB more of
    young objects between collections and a longer pause when one runs.
    0 keeps the interpreter's setting. The previous thresholds come back on exit.
    """
    previous = gc.get_threshold()
    if gen0_threshold:
        gc.set_threshold(gen0_threshold, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
