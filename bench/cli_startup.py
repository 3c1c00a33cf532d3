"""Start-up time of the ``epochal`` command against a bare Python interpreter.

What is measured: the median wall time of ``epochal --help`` and
``epochal plugins`` (15 runs each after 2 warm-ups; ``--quick``: 3 after 1),
run as users run them: the installed console script ``epochal`` next to
``sys.executable``, not ``python -m epochal``. The baseline is
``python -c pass`` with the same interpreter; the commands are interleaved run
by run so that machine noise hits them alike. Why: the CLI is the first thing
users touch and plugin discovery must not make it sluggish; everything above
bare Python is the cost of click, pluggy, entry-point discovery and the
plugins' own imports.

Target: each command under 150 ms above bare Python. The script also checks,
once per command, that running the CLI in-process imports neither torch nor
tensorflow (both are heavy and belong to the trainers, not to the CLI); an
import of either also misses the target. Exits 0 either way ("TARGET MET" /
"TARGET MISSED"); only a missing ``epochal`` script or a failing command is an
error (exit 2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_MS = 150.0
HEAVY = ("torch", "tensorflow")
CHECK_CODE = """
import contextlib, io, sys
from epochal.cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main({argv!r})
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
print(",".join(name for name in {heavy!r} if name in sys.modules))
"""


def epochal_script() -> Path:
    """The console script installed with the interpreter that runs this file."""
    script = Path(sys.executable).parent / ("epochal.exe" if os.name == "nt" else "epochal")
    if not script.exists():
        sys.exit(f"error: no console script at {script}; install epochal into this environment")
    return script


def run_once(command: list[str]) -> float:
    """Wall time of one run in milliseconds; a failing command is an error."""
    start = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = (time.perf_counter() - start) * 1000.0
    if result.returncode != 0:
        stderr = result.stderr.decode()
        sys.exit(f"error: {' '.join(command)} exited {result.returncode}:\n{stderr}")
    return elapsed


def median_times(commands: dict[str, list[str]], warmups: int, runs: int) -> dict[str, float]:
    """Median milliseconds per command, runs interleaved across commands."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_nr in range(warmups + runs):
        for name, command in commands.items():
            elapsed = run_once(command)
            if round_nr >= warmups:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


def heavy_imports(argv: list[str]) -> list[str]:
    """Which of torch/tensorflow are in sys.modules after the CLI ran in-process."""
    code = CHECK_CODE.format(argv=argv, heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: in-process CLI check for {argv} failed:\n{result.stderr}")
    lines = result.stdout.strip().splitlines()
    return [name for name in (lines[-1].split(",") if lines else []) if name]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 warm-up and 3 runs (smoke run)")
    args = parser.parse_args(argv)
    warmups, runs = (1, 3) if args.quick else (2, 15)

    script = str(epochal_script())
    cli_args = {"epochal --help": ["--help"], "epochal plugins": ["plugins"]}
    commands = {"python -c pass": [sys.executable, "-c", "pass"]}
    commands.update({name: [script, *extra] for name, extra in cli_args.items()})
    medians = median_times(commands, warmups, runs)
    baseline = medians["python -c pass"]

    version = sys.version.split()[0]
    print(f"{runs} runs after {warmups} warm-ups, median wall time; python {version}")
    print(f"{'command':<18}{'median ms':>11}{'above python ms':>17}")
    for name, value in medians.items():
        extra = "" if name == "python -c pass" else f"{value - baseline:>17.1f}"
        print(f"{name:<18}{value:>11.1f}{extra}")

    heavy = {name: heavy_imports(extra) for name, extra in cli_args.items()}
    for name, found in heavy.items():
        print(f"{name}: imports {' and '.join(found) if found else 'neither torch nor tensorflow'}")

    overheads = {name: medians[name] - baseline for name in cli_args}
    met = all(value < TARGET_MS for value in overheads.values()) and not any(heavy.values())
    summary = ", ".join(f"{name} +{value:.0f} ms" for name, value in overheads.items())
    clean = "no torch/tensorflow import" if not any(heavy.values()) else "torch/tensorflow imported"
    print(
        f"above bare python: {summary} (target < {TARGET_MS:.0f} ms), {clean}: "
        f"{'TARGET MET' if met else 'TARGET MISSED'}"
    )


if __name__ == "__main__":
    main()
