"""linear_backend: an epochal backend written from docs/plugins.md alone (a softmax-linear
classifier trained with momentum SGD in numpy)."""
