"""Training FOMM (chapter 6): the loop of the reference's ``train.py``, on any Keras backend.

:class:`Trainer` owns the three networks, their three Adam optimisers
(``betas = (0.5, 0.999)``), the learning-rate milestones and the checkpoints.
One epoch is ``steps_per_epoch`` compiled :class:`~kmt.train_step.TrainStep`
calls; after each epoch it logs the mean losses to ``log.csv``, draws a sample
sheet (source, driving, prediction, keypoints) and, every ``checkpoint_freq``
epochs and at the end, writes a checkpoint in kmt's one format
(:mod:`kmt.checkpoint`).

Randomness is a pure function of ``(seed, epoch)``: the data order and the
equivariance transforms of epoch ``e`` are drawn from generators seeded with
``(seed, e)``, so a run stopped after any epoch and resumed from its checkpoint
ends exactly where an uninterrupted run ends.
"""

import csv
import os
import time

import keras
import numpy as np

from kmt import checkpoint as ckpt
from kmt.config import build_models, load_config
from kmt.losses import VGG19Features, sample_transform_parameters, vgg_layers_needed
from kmt.train_step import TrainStep

__all__ = ["Trainer", "learning_rate_at", "OPTIMIZER_NAMES"]

OPTIMIZER_NAMES = ("kp_detector", "generator", "discriminator")
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
        vgg: the perceptual network (a :class:`~kmt.losses.VGG19Features`), or
            ``None`` to build one with ImageNet weights when available (a warning
            says when they are not).
        align_corners: the ``grid_sample`` convention of the models.
        seed: the seed of model initialisation, data order and transforms.
        jit: compile the training step (default; PyTorch runs eagerly).
        image_size: ``(height, width)`` recorded in checkpoints (default: the
            config's ``dataset_params.frame_shape``).
    """

    def __init__(self, config, log_dir, resume=None, vgg=None, align_corners=True, seed=0, jit=True, image_size=None,
                 init_from=None):
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
        os.makedirs(self.log_dir, exist_ok=True)

        keras.utils.set_random_seed(self.seed)
        self.models = build_models(self.config, align_corners=self.align_corners)
        self.optimizers = {
            name: keras.optimizers.Adam(self.train_params[_LEARNING_RATE_KEYS[name]], beta_1=0.5, beta_2=0.999)
            for name in OPTIMIZER_NAMES
        }
        layers = vgg_layers_needed(self.train_params["loss_weights"]["perceptual"])
        self.vgg = (vgg if vgg is not None else VGG19Features(num_layers=layers)) if layers else None
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
        )
        if resume:
            self.restore(os.path.join(self.log_dir, "last.kmt") if resume is True else resume)
        if init_from:
            self.initialize_from(init_from)

    # Checkpoints ------------------------------------------------------------------------------
    def save(self, path):
        """Write a training checkpoint (weights, optimiser state, epoch, log) to ``path``."""
        training = {"epoch": self.epoch, "seed": self.seed, "history": self.history}
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
        self._copy_weights(loaded, path)
        for name, optimizer in self.optimizers.items():
            values = loaded.optimizer_values.get(name, [])
            if len(values) != len(optimizer.variables):
                raise ValueError(
                    f"{path!r}: optimizer {name!r} has {len(values)} saved variables, the model needs "
                    f"{len(optimizer.variables)}; was it written for another config?"
                )
            for variable, value in zip(optimizer.variables, values):
                variable.assign(value)
        self.epoch = int(loaded.training["epoch"])
        self.seed = int(loaded.training.get("seed", self.seed))
        self.history = list(loaded.training.get("history", []))

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

    def train_epoch(self, batches, steps_per_epoch, progress=True):
        """Run one epoch over ``batches`` (an iterable of ``{"source", "driving"}`` dicts)."""
        epoch = self.epoch
        self._set_learning_rates(epoch)
        rng = np.random.default_rng([self.seed, epoch])
        bar = keras.utils.Progbar(steps_per_epoch, stateful_metrics=None, verbose=1 if progress else 0)
        totals, count, started, last = {}, 0, time.perf_counter(), None
        for batch in batches:
            if count == steps_per_epoch:
                break
            params = self._transform_parameters(rng, len(batch["source"]))
            losses = self.step(batch["source"], batch["driving"], params)
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + value
            count += 1
            last = batch
            bar.update(count, values=list(losses.items()))
        if count == 0:
            raise ValueError("The data yielded no batch this epoch: is the dataset empty or the batch size too large?")
        record = {"epoch": epoch, "steps": count, "seconds": round(time.perf_counter() - started, 3)}
        record.update({key: value / count for key, value in totals.items()})
        self.history.append(record)
        self.epoch += 1
        self._log(record)
        self.draw_samples(last, os.path.join(self.log_dir, "samples", f"epoch-{epoch:04d}.png"))
        return record

    def train(self, batches_for_epoch, steps_per_epoch, num_epochs=None, progress=True):
        """Train until ``num_epochs`` (default: ``train_params["num_epochs"]``).

        Args:
            batches_for_epoch: ``epoch -> iterable of batches``; deterministic in
                ``epoch`` so that resuming reproduces the same data.
            steps_per_epoch: training steps per epoch (the reference's
                ``len(dataset) * num_repeats // batch_size``).
        """
        num_epochs = int(self.train_params["num_epochs"] if num_epochs is None else num_epochs)
        freq = int(self.train_params.get("checkpoint_freq") or 0)
        while self.epoch < num_epochs:
            if progress:
                print(f"Epoch {self.epoch + 1}/{num_epochs}")
            self.train_epoch(batches_for_epoch(self.epoch), steps_per_epoch, progress=progress)
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
