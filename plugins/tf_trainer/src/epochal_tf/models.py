"""Ready-made Keras networks that configs name (``model = "mlp"``, ``model = "cnn"``), with the
same arguments as their torch twins in ``epochal_torch.models``, so one config serves both."""

from __future__ import annotations

from collections.abc import Sequence

from epochal.job.limits import cnn_channels, mlp_widths
from epochal_tf._tf import keras

__all__ = ["MLP", "SmallCNN"]


class MLP(keras.Sequential):
    """Dense ReLU layers on flattened inputs, returning logits (built at construction).

    Args:
        in_features: inputs per sample after flattening (64 for ``digits``).
        hidden: the hidden layers' widths, e.g. ``[128]``.
        num_classes: outputs (logits).
        dropout: dropout after each hidden layer (0: none).
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (128,),
        num_classes: int = 10,
        dropout: float = 0.0,
        name: str = "mlp",
    ) -> None:
        # Checked first: hidden = [-1] or [10**9] fails at once, naming the argument.
        widths = mlp_widths("MLP", in_features, hidden, num_classes)
        layers: list[keras.layers.Layer] = [keras.Input((in_features,))]
        for size in widths[1:-1]:
            layers.append(keras.layers.Dense(size, activation="relu"))
            if dropout:
                layers.append(keras.layers.Dropout(dropout))
        layers.append(keras.layers.Dense(num_classes))
        super().__init__(layers, name=name)


class SmallCNN(keras.Sequential):
    """Two 3x3 conv blocks (conv, batch norm, ReLU, 2x2 max-pool), then a linear classifier.

    Takes channels-first images ``(n, channels, height, width)``, as batchgenerators yields them
    (and as the torch twin takes them), any height and width.

    Args:
        in_channels: image channels (1 for grey).
        num_classes: outputs (logits).
        channels: the two blocks' widths.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (16, 32),
        name: str = "small_cnn",
    ) -> None:
        widths = cnn_channels("SmallCNN", in_channels, num_classes, channels)
        layers: list[keras.layers.Layer] = [
            keras.Input((in_channels, None, None)),
            keras.layers.Permute((2, 3, 1)),  # to channels-last: TF's CPU convolutions need it
        ]
        for size in widths[1:]:
            layers += [
                keras.layers.Conv2D(size, 3, padding="same", use_bias=False),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras.layers.MaxPooling2D(2),
            ]
        layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(num_classes)]
        super().__init__(layers, name=name)
