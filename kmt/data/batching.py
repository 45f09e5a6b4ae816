"""Background prefetching and a Keras adapter for anything that makes batches by index.

A *batch source* is any object with ``batch(index, epoch=0) -> dict`` (deterministic in its
arguments) and ``__len__`` (batches per epoch): :class:`kmt.data.dataset.Batches` over real
videos and :class:`kmt.data.synthetic.PairStream` over synthetic ones both are. Batches are
dicts of NumPy arrays (NHWC float32 images), which every Keras backend converts.
"""

import itertools
from collections import deque
from concurrent.futures import ThreadPoolExecutor

_END = object()


def prefetch(fn, indices, buffer=2, workers=1):
    """Yield ``fn(i)`` for ``i`` in ``indices``, in order, computed ahead in background threads.

    Up to ``buffer + workers`` results are in flight while the caller works on the current one.
    An exception raised by ``fn`` reaches the caller at the item that raised it. Leaving the
    loop early (``break``, garbage collection) cancels the pending work.
    ``buffer=0, workers=0`` computes everything in the calling thread.
    """
    it = iter(indices)
    if buffer <= 0 and workers <= 0:
        for i in it:
            yield fn(i)
        return
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="kmt-data")
    pending = deque()
    try:
        for i in itertools.islice(it, max(1, buffer + workers)):
            pending.append(pool.submit(fn, i))
        while pending:
            future = pending.popleft()
            nxt = next(it, _END)
            if nxt is not _END:
                pending.append(pool.submit(fn, nxt))
            yield future.result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


def iterate(source, epoch=0, buffer=2, workers=1, steps=None):
    """Iterate over the batches of one epoch of ``source`` (``steps`` of them, default all)."""
    steps = len(source) if steps is None else steps
    return prefetch(lambda i: source.batch(i, epoch), range(steps), buffer, workers)


def keras_dataset(source, keys=None, **kwargs):
    """A ``keras.utils.PyDataset`` over a batch source, for ``model.fit`` on any backend.

    Each item is the batch dict restricted to its array entries (or to ``keys``); the epoch
    advances in ``on_epoch_end`` so every epoch draws fresh pairs. ``kwargs`` go to
    ``PyDataset`` (``workers``, ``use_multiprocessing``, ``max_queue_size``).
    """
    import keras
    import numpy as np

    class _SourceDataset(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(**kwargs)
            self.epoch = 0

        def __len__(self):
            return len(source)

        def __getitem__(self, index):
            batch = source.batch(index, self.epoch)
            wanted = keys or [k for k, v in batch.items()
                              if isinstance(v, np.ndarray) and v.dtype.kind in "fiub"]
            return {k: batch[k] for k in wanted}

        def on_epoch_end(self):
            self.epoch += 1

    return _SourceDataset()
