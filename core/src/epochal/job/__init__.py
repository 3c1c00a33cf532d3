"""A job's configuration: TOML configs checked and turned into trainer arguments and objects."""
