"""Ready-made Keras networks that configs name (``model = "mlp"``, ``model = "cnn"``).

Their arguments are every backend's (:mod:`epochal.job.ready_models` documents and checks
them), so one config serves all; here the checked sizes become Keras layers."""

from __future__ import annotations

from collections.abc import Sequence

from epochal.job.ready_models import cnn_layout, mlp_layout
from epochal_tf._tf import keras

__all__ = ["MLP", "SmallCNN"]


class MLP(keras.Sequential):
    """Dense ReLU layers on flattened inputs, returning logits (built at construction); the
    arguments are :func:`~epochal.job.ready_models.mlp_layout`'s, and the Keras ``name``."""

    #: Checks the arguments before anything is built (run first by a job too).
    check_arguments = staticmethod(mlp_layout)

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (128,),
        num_classes: int = 10,
        dropout: float = 0.0,
        name: str = "mlp",
    ) -> None:
        layout = mlp_layout(in_features, hidden, num_classes, dropout)  # checked first
        layers: list[keras.layers.Layer] = [keras.Input((in_features,))]
        for size in layout.hidden:
            layers.append(keras.layers.Dense(size, activation="relu"))
            if layout.dropout:
                layers.append(keras.layers.Dropout(layout.dropout))
        layers.append(keras.layers.Dense(layout.num_classes))
        super().__init__(layers, name=name)


class SmallCNN(keras.Sequential):
    """Two 3x3 conv blocks (conv, batch norm, ReLU, 2x2 max-pool), then a linear classifier.

    Takes channels-first images ``(n, channels, height, width)``, as batchgenerators yields them,
    any height and width. The arguments are :func:`~epochal.job.ready_models.cnn_layout`'s, and
    the Keras ``name``.
    """

    #: Checks the arguments before anything is built (run first by a job too).
    check_arguments = staticmethod(cnn_layout)

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (16, 32),
        name: str = "small_cnn",
    ) -> None:
        layout = cnn_layout(in_channels, num_classes, channels)
        layers: list[keras.layers.Layer] = [
            keras.Input((in_channels, None, None)),
            keras.layers.Permute((2, 3, 1)),  # to channels-last: TF's CPU convolutions need it
        ]
        for size in layout.channels[1:]:
            layers += [
                keras.layers.Conv2D(size, 3, padding="same", use_bias=False),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
                keras.layers.MaxPooling2D(2),
            ]
        layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(num_classes)]
        super().__init__(layers, name=name)
