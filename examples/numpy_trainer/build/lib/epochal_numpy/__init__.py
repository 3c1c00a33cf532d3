"""Example epochal plugin: softmax regression in pure numpy."""

__version__ = "0.1.0"
