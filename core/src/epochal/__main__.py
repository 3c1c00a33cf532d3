"""``python -m epochal`` (what a process launcher runs as ``-m epochal``)."""

from epochal.cli.main import main

if __name__ == "__main__":
    main()
