"""Where a config's training batches come from: a dataset on disk, or the synthetic generator.

A config in the official schema names its data in ``dataset_params`` (``root_dir``
in the official layout: ``train/`` and ``test/``); kmt reads it with
:class:`~kmt.data.FramesDataset`. kmt's own configs may add a
``synthetic_params`` section instead, to stream pairs from the procedural
generator in memory (:class:`~kmt.data.PairStream`), which never touches the
disk::

    synthetic_params:
      family: faces          # or figures
      num_identities: 256    # identities seen in training (test ones are disjoint)
      num_motions: 1024
      num_frames: 64

One epoch is ``num_repeats * (number of videos or identities) // batch_size``
steps, as in the reference, unless ``steps_per_epoch`` asks for another number:
then an epoch is exactly that many steps, on a dataset on disk too (fewer steps
than one pass over the videos stop early; more go on into further passes, each
shuffled anew). Batch ``s`` of epoch ``e`` depends only on the seed, ``e`` and ``s``
(augmentation included), so training can be resumed exactly, even from a checkpoint
written in the middle of an epoch: ``batches_for_epoch(e, start=s)`` starts there
without reading the batches before it.
"""

import numbers

from kmt.data import Batches, FramesDataset, PairStream

__all__ = ["training_batches", "SYNTHETIC_KEYS"]

SYNTHETIC_KEYS = ("family", "num_identities", "num_motions", "num_frames")


def _steps(count, train_params):
    steps = int(train_params.get("num_repeats", 1)) * count // int(train_params["batch_size"])
    if steps < 1:
        raise ValueError(
            f"An epoch would have no step: {count} videos x num_repeats {train_params.get('num_repeats', 1)} "
            f"< batch_size {train_params['batch_size']}."
        )
    return steps


def training_batches(config, seed=0, steps_per_epoch=None):
    """``(batches_for_epoch, steps_per_epoch)`` for :meth:`kmt.training.Trainer.train`.

    ``batches_for_epoch(e)`` iterates over exactly ``steps_per_epoch`` batches (``None``: the
    reference's count above), deterministic in ``seed`` and ``e``; ``batches_for_epoch(e, start=s)``
    over the same batches from step ``s`` on.
    """
    whole = isinstance(steps_per_epoch, numbers.Integral) and not isinstance(steps_per_epoch, bool)
    if steps_per_epoch is not None and not (whole and steps_per_epoch >= 1):
        raise ValueError(f"steps_per_epoch must be a whole number >= 1 (or None for the config's epoch), "
                         f"got {steps_per_epoch!r}")
    train_params = config["train_params"]
    dataset_params = dict(config.get("dataset_params") or {})
    batch_size = int(train_params["batch_size"])
    synthetic = config.get("synthetic_params")
    if synthetic is not None:
        unknown = sorted(set(synthetic) - set(SYNTHETIC_KEYS))
        if unknown:
            raise ValueError(f"synthetic_params: unknown keys {unknown}; expected some of {list(SYNTHETIC_KEYS)}.")
        frame_shape = dataset_params.get("frame_shape", [64, 64, 3])
        identities = int(synthetic.get("num_identities", 256))
        steps = int(steps_per_epoch) if steps_per_epoch is not None else _steps(identities, train_params)
        stream = PairStream(
            family=synthetic.get("family", "faces"),
            size=tuple(frame_shape[:2]),
            batch_size=batch_size,
            num_identities=identities,
            num_motions=int(synthetic.get("num_motions", 1024)),
            num_frames=int(synthetic.get("num_frames", 64)),
            seed=seed,
            steps_per_epoch=steps,
            augmentation_params=dataset_params.get("augmentation_params"),
        )
        return _from_step(stream, steps), steps
    if "root_dir" not in dataset_params:
        raise ValueError("The config has neither dataset_params.root_dir nor synthetic_params: no training data.")
    dataset = FramesDataset(**dataset_params, is_train=True)
    batches = Batches(dataset, batch_size, num_repeats=int(train_params.get("num_repeats", 1)), seed=seed,
                      steps_per_epoch=None if steps_per_epoch is None else int(steps_per_epoch))
    return _from_step(batches, len(batches)), len(batches)


def _from_step(source, steps):
    """``batches_for_epoch(epoch, start=0)`` over a batch source (``batch(index, epoch)``), prefetched."""
    from kmt.data.batching import prefetch

    def batches_for_epoch(epoch, start=0):
        if not 0 <= int(start) <= steps:
            raise ValueError(f"start must be a step in [0, {steps}], got {start!r}")
        return prefetch(lambda index: source.batch(index, epoch), range(int(start), steps), source.prefetch,
                        source.workers)

    return batches_for_epoch
