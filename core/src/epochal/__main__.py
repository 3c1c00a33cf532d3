"""``python -m epochal`` (what ``torchrun -m epochal`` runs)."""

from epochal.cli.main import main

if __name__ == "__main__":
    main()
