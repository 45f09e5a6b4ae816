"""Training FOMM (chapter 7): the loop of the reference's ``train.py``, on any Keras backend.

:class:`Trainer` owns the three networks, their three Adam optimisers
(``betas = (0.5, 0.999)``), the learning-rate milestones and the checkpoints.
One epoch is ``steps_per_epoch`` compiled :class:`~kmt.train_step.TrainStep`
calls; after each epoch it logs the mean losses to ``log.csv``, draws a sample
sheet (source, driving, prediction, keypoints) and writes ``last.kmt``, plus
``checkpoint-NNNN.kmt`` every ``checkpoint_freq`` epochs, in kmt's one format
(:mod:`kmt.checkpoint`). With ``save_every=N`` it also writes ``last.kmt`` after
every ``N``-th step of an epoch, so a crash loses at most ``N`` steps of work
(otherwise at most one epoch).

Resuming is exact: the batches of step ``s`` of epoch ``e`` are a function of
``(seed, e, s)`` (:func:`kmt.training_data.training_batches`), and the
equivariance transforms of epoch ``e`` come from a generator seeded with
``(seed, e)`` whose state a mid-epoch checkpoint saves, together with the
epoch's running loss sums, every network and optimiser variable, the epoch and
the step. A run killed at any point and resumed from its last checkpoint ends
with the same weights and optimiser state as an uninterrupted run.
"""

import contextlib
import csv
import inspect
import itertools
import os
import time

import keras
import numpy as np

from kmt import backend
from kmt import checkpoint as ckpt
from kmt.config import build_models, load_config
from kmt.losses import VGG19Features, sample_transform_parameters, vgg_layers_needed
from kmt.optimizers import TorchAdam
from kmt.train_step import TrainStep

__all__ = ["Trainer", "learning_rate_at", "OPTIMIZER_NAMES", "PRECISIONS"]

OPTIMIZER_NAMES = ("kp_detector", "generator", "discriminator")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
_LEARNING_RATE_KEYS = {"kp_detector": "lr_kp_detector", "generator": "lr_generator", "discriminator": "lr_discriminator"}


def learning_rate_at(base, epoch, milestones, gamma=0.1):
    """The reference's MultiStepLR: ``base * gamma ** (number of milestones <= epoch)``."""
    return base * gamma ** sum(1 for milestone in milestones if epoch >= milestone)


class Trainer:
    """Trains the keypoint detector, generator and discriminator of a config.

    Args:
        config: a config dict, a path to a YAML file, or the name of a config kmt
            ships. ``train_params`` drives the training as in the reference.
        log_dir: where ``log.csv``, ``samples/`` and the checkpoints go.
        resume: a training checkpoint (``.kmt``) to continue from, or ``True`` to
            continue from ``log_dir/last.kmt``.
        init_from: a checkpoint (``.kmt``, weights only is enough, e.g. the shipped
            model or a converted official one) whose weights start the training:
            fine-tuning. The optimisers, the epoch count and the log start afresh;
            networks the checkpoint lacks (often the discriminator) keep their
            initialisation. Not together with ``resume``.
            ``last.kmt`` may have been written in the middle of an epoch: the run
            continues from that step.
        vgg: the perceptual network (a :class:`~kmt.losses.VGG19Features`), or
            ``None`` to build one with ImageNet weights when available (a warning
            says when they are not).
        vgg_weights: instead of ``vgg``, the weights of the perceptual network:
            torchvision's ``vgg19-dcbb9e9d.pth`` (the paper's features, with the
            reference's input normalisation), a Keras ``.h5`` file, or a dict of
            torchvision-layout arrays (see :class:`~kmt.vgg.VGG19Features`).
        align_corners: the ``grid_sample`` convention of the models.
        seed: the seed of model initialisation, data order and transforms.
        jit: compile the training step (default; PyTorch runs eagerly).
        image_size: ``(height, width)`` recorded in checkpoints (default: the
            config's ``dataset_params.frame_shape``).
        devices: how many devices train (data parallel), or ``"all"``: the
            config's ``batch_size`` is the global batch, split evenly over them,
            and each step computes what one device computes on the whole batch
            (BatchNorm statistics included). JAX uses
            ``keras.distribution.DataParallel``, TensorFlow
            ``tf.distribute.MirroredStrategy``; PyTorch trains on one device.
            Checkpoints do not depend on it: a run may resume on another count.
        precision: ``"float32"``, or a Keras mixed precision policy,
            ``"mixed_bfloat16"`` or ``"mixed_float16"``: the networks' layers
            compute in 16 bits with float32 weights, while their output heads
            (keypoints, Jacobians, masks, occlusion, prediction), the warps and
            the losses stay in float32; under ``"mixed_float16"`` every
            optimizer is a ``keras.optimizers.LossScaleOptimizer`` (dynamic
            loss scaling). A run resumes with the precision it started with.
    """

    def __init__(self, config, log_dir, resume=None, vgg=None, align_corners=True, seed=0, jit=True, image_size=None,
                 init_from=None, vgg_weights=None, devices=1, precision="float32"):
        if vgg is not None and vgg_weights is not None:
            raise ValueError("Give `vgg` (a built perceptual network) or `vgg_weights` (weights to build it "
                             f"from), not both; got vgg_weights={vgg_weights!r}.")
        if resume and init_from:
            raise ValueError("Give `resume` (continue a training run) or `init_from` (start a new run from a "
                             f"checkpoint's weights), not both; got resume={resume!r}, init_from={init_from!r}.")
        self.config = load_config(config)
        if "train_params" not in self.config:
            raise ValueError("The config has no `train_params` section: it cannot drive training.")
        self.train_params = self.config["train_params"]
        self.log_dir = str(log_dir)
        self.seed = int(seed)
        self.align_corners = bool(align_corners)
        frame_shape = self.config.get("dataset_params", {}).get("frame_shape")
        self.image_size = tuple(image_size) if image_size else (tuple(frame_shape[:2]) if frame_shape else None)
        self.epoch = 0
        self.history = []
        self._progress = None  # the epoch under way (an _EpochProgress), None between epochs
        os.makedirs(self.log_dir, exist_ok=True)
        ckpt.remove_partial_files(self.log_dir)  # left by a process killed while writing a checkpoint

        if precision not in PRECISIONS:
            raise ValueError(f"`precision` must be one of {', '.join(PRECISIONS)}; got {precision!r}.")
        self.precision = precision
        self.placement = backend.load("training").placement(devices)
        batch_size = self.train_params.get("batch_size")
        if self.placement.count > 1 and isinstance(batch_size, int) and batch_size % self.placement.count:
            raise ValueError(f"train_params.batch_size is {batch_size}, which does not split evenly over "
                             f"{self.placement.count} devices: the batch size is the global batch and must be a "
                             "multiple of `devices`.")
        with self.placement.scope(), _dtype_policy(precision):
            self._build(vgg, vgg_weights, jit)
        if resume:
            self.restore(os.path.join(self.log_dir, "last.kmt") if resume is True else resume)
        if init_from:
            self.initialize_from(init_from)

    def _build(self, vgg, vgg_weights, jit):
        keras.utils.set_random_seed(self.seed)
        self.models = build_models(self.config, align_corners=self.align_corners)
        self.optimizers = {
            # torch.optim.Adam's update and epsilon, as the reference trains (kmt.optimizers).
            name: TorchAdam(self.train_params[_LEARNING_RATE_KEYS[name]], beta_1=0.5, beta_2=0.999)
            for name in OPTIMIZER_NAMES
        }
        if self.precision == "mixed_float16":
            self.optimizers = {name: keras.optimizers.LossScaleOptimizer(optimizer)
                               for name, optimizer in self.optimizers.items()}
        layers = vgg_layers_needed(self.train_params["loss_weights"]["perceptual"])
        if layers and vgg is None:
            vgg = VGG19Features(num_layers=layers) if vgg_weights is None else VGG19Features(
                vgg_weights, num_layers=layers)
        self.vgg = vgg if layers else None
        self.step = TrainStep(
            self.models["kp_detector"],
            self.models["generator"],
            self.models["discriminator"],
            self.optimizers,
            self.train_params,
            num_channels=self.config["model_params"]["common_params"]["num_channels"],
            vgg=self.vgg,
            align_corners=self.align_corners,
            jit=jit,
            placement=self.placement,
        )

    # Checkpoints ------------------------------------------------------------------------------
    @property
    def step_in_epoch(self):
        """Steps of the current epoch already done (non-zero only within an epoch, or after resuming within one)."""
        return self._progress.count if self._progress is not None else 0

    def save(self, path):
        """Write a training checkpoint (weights, optimiser state, epoch, step within it, log) to ``path``."""
        training = {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "seed": self.seed,
                    "precision": self.precision,
                    "history": self.history,
                    "epoch_progress": self._progress.state() if self._progress is not None else None}
        return ckpt.save(
            path, self.config, self.models, align_corners=self.align_corners, image_size=self.image_size,
            training=training, optimizers=self.optimizers,
        )

    def restore(self, path):
        """Continue from a training checkpoint written by :meth:`save`."""
        loaded = ckpt.load(path)
        if loaded.training is None:
            raise ValueError(f"{path!r} holds weights only (no training state); it cannot be resumed. To start "
                             "a new run from its weights, use `init_from` (`kmt train --init-from`).")
        saved_precision = loaded.training.get("precision", "float32")
        if saved_precision != self.precision:
            raise ValueError(f"{path!r} was trained with precision {saved_precision!r}; resume it with the same "
                             f"`precision` (got {self.precision!r}), or start a new run from its weights with "
                             "`init_from`.")
        self._copy_weights(loaded, path)
        for name, optimizer in self.optimizers.items():
            values = loaded.optimizer_values.get(name, [])
            if len(values) != len(optimizer.variables):
                raise ValueError(
                    f"{path!r}: optimizer {name!r} has {len(values)} saved variables, the model needs "
                    f"{len(optimizer.variables)}; was it written for another config?"
                )
            for variable, value in zip(optimizer.variables, values):
                if tuple(variable.shape) != tuple(np.shape(value)):
                    raise ValueError(f"{path!r}: optimizer {name!r} variable {variable.path!r} was saved with shape "
                                     f"{tuple(np.shape(value))}, the model needs {tuple(variable.shape)}; was it "
                                     "written for another config?")
                variable.assign(value)
        training = loaded.training
        self.epoch = int(training["epoch"])
        self.seed = int(training.get("seed", self.seed))
        self.history = list(training.get("history", []))
        progress, step = training.get("epoch_progress"), int(training.get("step_in_epoch", 0))
        if step and not (isinstance(progress, dict) and progress.get("step") == step):
            raise ValueError(f"{path!r}: training.json says step_in_epoch {step} but holds no matching "
                             f"epoch_progress (got {progress!r}); the file is damaged.")
        try:
            self._progress = _EpochProgress.from_state(self.seed, self.epoch, progress) if step else None
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path!r}: training.json's epoch_progress cannot be read ({error!r}); expected the "
                             "keys step, steps_per_epoch, totals, seconds and transform_rng. The file is "
                             "damaged.") from error

    def initialize_from(self, path):
        """Start from the weights of the checkpoint at ``path`` (fine-tuning); returns the networks copied."""
        loaded = ckpt.load(path)
        return self._copy_weights(loaded, path)

    def _copy_weights(self, loaded, path):
        copied = [name for name in self.models if name in loaded.models]
        if not copied:
            raise ValueError(f"{path!r} holds none of the networks {sorted(self.models)}.")
        for name in copied:
            targets, sources = self.models[name].variables, loaded.models[name].variables
            if len(targets) != len(sources):
                raise ValueError(f"{path!r}: {name} has {len(sources)} variables, the config's {name} has "
                                 f"{len(targets)}; was it written for another config?")
            for target, source in zip(targets, sources):
                if tuple(target.shape) != tuple(source.shape):
                    raise ValueError(f"{path!r}: {name} variable {source.path!r} has shape {tuple(source.shape)}, "
                                     f"the config's {target.path!r} has {tuple(target.shape)}; was it written for "
                                     "another config?")
                target.assign(source.value)
        return copied

    # The loop ------------------------------------------------------------------------------------
    def _set_learning_rates(self, epoch):
        milestones = self.train_params.get("epoch_milestones") or []
        for name, optimizer in self.optimizers.items():
            optimizer.learning_rate.assign(learning_rate_at(self.train_params[_LEARNING_RATE_KEYS[name]], epoch, milestones))

    def _transform_parameters(self, rng, batch_size):
        params = self.train_params.get("transform_params") or {}
        weights = self.train_params["loss_weights"]
        if weights["equivariance_value"] + weights["equivariance_jacobian"] == 0:
            return {}
        return sample_transform_parameters(
            rng, batch_size, params["sigma_affine"], params.get("sigma_tps"), params.get("points_tps")
        )

    def train_epoch(self, batches, steps_per_epoch, progress=True, save_every=None):
        """Run one epoch over ``batches`` (an iterable of ``{"source", "driving"}`` dicts).

        After resuming from a checkpoint written within an epoch, ``batches`` holds the
        epoch's batches from step :attr:`step_in_epoch` on, and the epoch is completed.
        ``save_every``: also write ``last.kmt`` after every ``save_every``-th step.
        """
        epoch = self.epoch
        self._set_learning_rates(epoch)
        if self._progress is None:
            self._progress = _EpochProgress(self.seed, epoch, steps_per_epoch)
        run = self._progress
        if run.steps_per_epoch != steps_per_epoch:
            raise ValueError(f"The checkpoint resumed stopped at step {run.count} of an epoch of "
                             f"{run.steps_per_epoch} steps, but steps_per_epoch is {steps_per_epoch}: resume with "
                             f"the same steps per epoch (`kmt train --steps-per-epoch {run.steps_per_epoch}`).")
        bar = keras.utils.Progbar(steps_per_epoch, stateful_metrics=None, verbose=1 if progress else 0)
        last = None
        for batch in batches:
            if run.count == steps_per_epoch:
                break
            params = self._transform_parameters(run.rng, len(batch["source"]))
            run.add(self.step(batch["source"], batch["driving"], params))
            last = batch
            bar.update(run.count, values=list(run.last.items()))
            if save_every and run.count % save_every == 0 and run.count < steps_per_epoch:
                self.save(os.path.join(self.log_dir, "last.kmt"))
        if last is None:
            raise ValueError("The data yielded no batch this epoch: is the dataset empty or the batch size too large?")
        record = run.record(epoch)
        self.history.append(record)
        self.epoch += 1
        self._progress = None
        self._log(record)
        self.draw_samples(last, os.path.join(self.log_dir, "samples", f"epoch-{epoch:04d}.png"))
        return record

    def train(self, batches_for_epoch, steps_per_epoch, num_epochs=None, progress=True, save_every=None):
        """Train until ``num_epochs`` (default: ``train_params["num_epochs"]``).

        Args:
            batches_for_epoch: ``epoch -> iterable of batches``; deterministic in
                ``epoch`` so that resuming reproduces the same data. If it takes a
                ``start`` argument (as :func:`kmt.training_data.training_batches`'
                does), ``batches_for_epoch(epoch, start=s)`` must yield the epoch's
                batches from step ``s`` on; otherwise a run resumed within an epoch
                skips the first ``s`` batches of ``batches_for_epoch(epoch)``.
            steps_per_epoch: training steps per epoch (the reference's
                ``len(dataset) * num_repeats // batch_size``).
            save_every: also write ``last.kmt`` after every ``save_every``-th step of
                an epoch (default: only after each epoch).
        """
        num_epochs = int(self.train_params["num_epochs"] if num_epochs is None else num_epochs)
        freq = int(self.train_params.get("checkpoint_freq") or 0)
        whole = isinstance(save_every, int) and not isinstance(save_every, bool)
        if save_every is not None and not (whole and save_every >= 1):
            raise ValueError(f"`save_every` must be a whole number of steps >= 1 or None; got {save_every!r}.")
        while self.epoch < num_epochs:
            start = self.step_in_epoch
            if progress:
                print(f"Epoch {self.epoch + 1}/{num_epochs}" + (f", resumed after step {start}" if start else ""))
            self.train_epoch(_batches_from(batches_for_epoch, self.epoch, start), steps_per_epoch, progress=progress,
                             save_every=save_every)
            self.save(os.path.join(self.log_dir, "last.kmt"))
            if freq and self.epoch % freq == 0:
                self.save(os.path.join(self.log_dir, f"checkpoint-{self.epoch:04d}.kmt"))
        return self.history

    # Logging ----------------------------------------------------------------------------------------
    def _log(self, record):
        path = os.path.join(self.log_dir, "log.csv")
        fields = sorted({key for entry in self.history for key in entry}, key=lambda k: (k not in ("epoch", "steps", "seconds"), k))
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.history)

    def draw_samples(self, batch, path, count=4):
        """Save a sheet of source, driving and prediction rows with keypoints drawn on them."""
        if batch is None:
            return None
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        from kmt.visualize import draw_keypoints_grid

        source = np.asarray(batch["source"][:count])
        driving = np.asarray(batch["driving"][:count])
        kp_detector, generator = self.models["kp_detector"], self.models["generator"]
        kp_source = kp_detector(source, training=False)
        kp_driving = kp_detector(driving, training=False)
        out = generator(source, kp_driving=kp_driving, kp_source=kp_source, training=False)
        figure = draw_keypoints_grid(
            [("source", source, kp_source["value"]), ("driving", driving, kp_driving["value"]),
             ("prediction", out["prediction"], kp_driving["value"])],
            title=f"epoch {self.epoch}",
        )
        os.makedirs(os.path.dirname(path), exist_ok=True)
        figure.savefig(path, dpi=80)
        plt.close(figure)
        return path


@contextlib.contextmanager
def _dtype_policy(name):
    """Layers built inside take the Keras dtype policy ``name``; the global policy is restored afterwards."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _batches_from(batches_for_epoch, epoch, start):
    """The batches of ``epoch`` from step ``start`` on."""
    if start == 0:
        return batches_for_epoch(epoch)
    try:
        takes_start = "start" in inspect.signature(batches_for_epoch).parameters
    except (TypeError, ValueError):
        takes_start = False
    if takes_start:
        return batches_for_epoch(epoch, start=start)
    return itertools.islice(batches_for_epoch(epoch), start, None)


class _EpochProgress:
    """The epoch under way: steps done, running loss sums, seconds spent, and the transform generator.

    The generator of epoch ``e`` starts from ``(seed, e)``; a mid-epoch checkpoint saves
    its state, so the transforms after a resume are those an uninterrupted run draws.
    """

    def __init__(self, seed, epoch, steps_per_epoch):
        self.steps_per_epoch = int(steps_per_epoch)
        self.rng = np.random.default_rng([seed, epoch])
        self.count, self.totals, self.last = 0, {}, {}
        self.started = time.perf_counter()

    @classmethod
    def from_state(cls, seed, epoch, state):
        """The progress saved by :meth:`state` (in a checkpoint's ``training.json``)."""
        progress = cls(seed, epoch, state["steps_per_epoch"])
        progress.count, progress.totals = int(state["step"]), dict(state["totals"])
        progress.rng.bit_generator.state = state["transform_rng"]
        progress.started -= float(state["seconds"])
        return progress

    def add(self, losses):
        self.last = losses
        for key, value in losses.items():
            self.totals[key] = self.totals.get(key, 0.0) + value
        self.count += 1

    def state(self):
        """A JSON-serialisable copy (Python floats and ints round-trip exactly through JSON)."""
        return {"step": self.count, "steps_per_epoch": self.steps_per_epoch, "totals": dict(self.totals),
                "seconds": time.perf_counter() - self.started, "transform_rng": self.rng.bit_generator.state}

    def record(self, epoch):
        """The epoch's line of the log: its steps, seconds and mean losses."""
        record = {"epoch": epoch, "steps": self.count, "seconds": round(time.perf_counter() - self.started, 3)}
        record.update({key: value / self.count for key, value in self.totals.items()})
        return record
