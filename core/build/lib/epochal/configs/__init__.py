"""Job configs shipped with epochal: ``default.toml`` is what ``epochal train`` runs."""
