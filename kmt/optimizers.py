"""Adam exactly as ``torch.optim.Adam`` computes it, which the reference trains with.

Keras' Adam and PyTorch's Adam keep the same moments ``m`` and ``v`` but place
epsilon differently, and default to different values:

* Keras: ``w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``, ``eps = 1e-7``
  (epsilon "hat", added before the bias correction of ``v``);
* PyTorch: ``w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``, ``eps = 1e-8``.

On the first step that is ``lr * g / (|g| + 3.2e-6)`` for Keras against
``lr * g / (|g| + 1e-8)`` for PyTorch: parameters with gradients of order
1e-5 or less move by visibly different amounts. :class:`TorchAdam` uses PyTorch's
formula with the same slot variables as ``keras.optimizers.Adam`` (``iterations``,
``learning_rate``, one ``momentum`` and one ``velocity`` per variable), so
checkpoints written with either load into the other. On PyTorch the update of all variables runs
fused (``torch._foreach_*``), as ``torch.optim.Adam`` does.
"""

import math

import keras
from keras import ops

from kmt import backend

__all__ = ["TorchAdam"]


def _one_minus_power(beta, step):
    """``1 - beta ** step`` to float32 precision, as PyTorch gets it in double precision.

    ``1 - float32(0.999) ** t`` loses five digits (float32(0.999) is 0.99900001), so it is
    computed as ``-expm1(t * log(beta))`` with the logarithm taken in double precision.
    """
    if isinstance(beta, (int, float)):
        return -ops.expm1(step * math.log(beta))
    return 1 - ops.power(ops.cast(beta, step.dtype), step)


@keras.saving.register_keras_serializable(package="kmt")
class TorchAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with ``torch.optim.Adam``'s update (and its default ``epsilon = 1e-8``).

    Arguments are those of ``keras.optimizers.Adam``; ``amsgrad`` takes the
    maximum of the second moments as PyTorch does. Weight decay, clipping and
    the other base-optimizer options behave as in Keras.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8, amsgrad=False,
                 name="torch_adam", **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         amsgrad=amsgrad, name=name, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        """``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``, then PyTorch's bias-corrected step."""
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        local_step = ops.cast(self.iterations + 1, dtype)
        bias_correction_1 = _one_minus_power(self.beta_1, local_step)
        bias_correction_2 = _one_minus_power(self.beta_2, local_step)

        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        if self.amsgrad:
            v_hat = self._velocity_hats[self._get_variable_index(variable)]
            self.assign(v_hat, ops.maximum(v_hat, v))
            v = v_hat
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_correction_2)), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / bias_correction_1), denominator))

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """One fused update of all variables where the backend has it (``fused_adam_update`` of
        ``kmt.backend.<name>.ops``: PyTorch's ``torch._foreach_*``, as ``torch.optim.Adam``)."""
        fused = backend.load("ops").fused_adam_update
        if fused is None or self.amsgrad:
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        indices = [self._get_variable_index(v) for v in trainable_variables]
        fused(
            [v.value for v in trainable_variables],
            [self._momentums[i].value for i in indices],
            [self._velocities[i].value for i in indices],
            grads,
            learning_rate=float(learning_rate),
            beta_1=float(self.beta_1),
            beta_2=float(self.beta_2),
            epsilon=float(self.epsilon),
            step=float(ops.convert_to_numpy(self.iterations)) + 1.0,
        )

    def moments(self, variable):
        """The ``(first, second)`` moment slots of ``variable`` (Keras variables; ``m``, ``v`` above).

        After one step from zero moments ``m = (1 - beta_1) * g``: the gradient of that step
        can be read back without recomputing it.
        """
        index = self._get_variable_index(variable)
        return self._momentums[index], self._velocities[index]
