"""The ready-made networks' arguments, checked once in the core for every backend."""

from __future__ import annotations

import pytest

from epochal.job.ready_models import cnn_layout, mlp_layout


def test_mlp_layout_gives_the_checked_sizes():
    layout = mlp_layout(64, [32, 16], 10, 0.25)
    assert layout.widths == [64, 32, 16, 10]
    assert (layout.hidden, layout.num_classes, layout.dropout) == ([32, 16], 10, 0.25)
    assert cnn_layout(1, 10, (16, 32)).channels == [1, 16, 32]


@pytest.mark.parametrize("dropout", [1.5, -0.1, True, "0.1", float("nan")])
def test_a_dropout_outside_0_to_1_is_named(dropout):
    with pytest.raises(ValueError, match=r"MLP: dropout must be a number from 0 to 1, got "):
        mlp_layout(64, [8], 10, dropout)


def test_the_sizes_are_checked_by_the_core_rules():
    with pytest.raises(ValueError, match=r"hidden\[0\] must be a positive integer"):
        mlp_layout(64, [-1], 10, 0.0)
    with pytest.raises(ValueError, match=r"channels\[1\] must be a positive integer"):
        cnn_layout(1, 10, (16, 0))
