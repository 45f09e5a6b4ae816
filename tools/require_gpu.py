"""Exit with an error unless the Keras backend in use sees a GPU (the GPU workflow's first check).

    KERAS_BACKEND=tensorflow python tools/require_gpu.py

Prints the GPUs it sees. Without one, the full-size chapters would quietly run on the
CPU for hours; this makes the job fail at once instead.
"""

import os
import sys


def visible_gpus(backend):
    """Names of the GPUs ``backend`` (tensorflow, jax or torch) sees."""
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_physical_devices("GPU")]
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    raise SystemExit(f"KERAS_BACKEND must be tensorflow, jax or torch; got {backend!r}.")


def main():
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    gpus = visible_gpus(backend)
    if not gpus:
        sys.exit(f"require_gpu: the {backend} backend sees no GPU; the full-size chapters would run on the CPU. "
                 "Check the driver (nvidia-smi) and that the CUDA build of the framework is installed.")
    print(f"{backend} sees {len(gpus)} GPU(s): {', '.join(gpus)}")


if __name__ == "__main__":
    main()
