"""The devices a training step runs on, as every backend's ``training.placement`` describes them.

A :class:`Placement` names ``count`` devices; the global batch is split evenly
over them (``batch_size % count == 0``), each device holding ``batch_size // count``
consecutive samples. :func:`resolve_count` turns the ``devices`` argument of
:class:`~kmt.training.Trainer` (a whole number or ``"all"``) into a count,
with errors that say what the backend sees.
"""

import contextlib

__all__ = ["Placement", "resolve_count", "check_devices_argument", "local_moments"]


class Placement:
    """One or more devices of one backend; this base class is one device, the backend's default."""

    def __init__(self, names):
        self.names = list(names)
        self.count = len(self.names)

    def scope(self):
        """Build models and optimizers inside this context (a no-op on one device)."""
        return contextlib.nullcontext()

    def check_batch(self, batch_size):
        """Raise unless a batch of ``batch_size`` samples splits evenly over the devices."""
        if batch_size % self.count:
            raise ValueError(f"The batch of {batch_size} samples does not split evenly over {self.count} devices: "
                             f"batch_size (the global batch) must be a multiple of `devices` ({self.count}).")

    def __repr__(self):
        return f"{type(self).__name__}({self.names})"


def check_devices_argument(devices):
    """``devices`` as ``"all"`` or an ``int >= 1`` (digits in a string are read as a number)."""
    if devices == "all":
        return devices
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"`devices` must be a whole number >= 1 or 'all'; got {devices!r}.")
    return devices


def resolve_count(devices, available, backend):
    """The number of devices ``devices`` asks for (``"all"`` or a whole number >= 1), given ``available`` names."""
    devices = check_devices_argument(devices)
    if devices == "all":
        return len(available)
    if devices > len(available):
        hint = ""
        if all(":CPU:" in name.upper() or name.lower().startswith("cpu") for name in available):
            hint = (f" To try several devices on a CPU, split it into virtual devices first: "
                    f"`kmt train --cpu-devices {devices}` (kmt.backend.split_cpu({devices}) in Python, before the "
                    "backend starts).")
        raise ValueError(f"`devices` is {devices} but the {backend} backend sees {len(available)} device(s): "
                         f"{', '.join(available)}.{hint}")
    return devices


def local_moments(x, axes):
    """``(mean, biased variance, count)`` of ``x`` over ``axes``: two passes (the mean, then the mean squared
    deviation from it), ``count`` the number of values each statistic averages, as a float32 scalar."""
    from keras import ops

    mean = ops.mean(x, axis=axes)
    count = 1
    for axis in axes:
        count = count * ops.shape(x)[axis]
    return mean, ops.mean(ops.square(x - mean), axis=axes), ops.cast(count, "float32")
