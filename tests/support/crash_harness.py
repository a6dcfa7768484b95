"""Run the `segments` command line and SIGKILL it just before its N-th write to storage.

    python tests/support/crash_harness.py --kill-at N --count-file PATH [--log-file PATH] -- ARGS...

ARGS are the command line's own (`run --date 2026-03-30 --config ws/segments.yaml`). Every
call of a mutating `Root` method, on any root, counts; before call number N the process kills
itself with SIGKILL, so nothing of it runs afterwards: no `finally`, no flush, no clean-up, as
when a machine dies. `--kill-at 0` never kills. When the command ends by itself, the number of
mutating calls it made goes to `--count-file`: the kill points an uninterrupted run has.
`--log-file` gets one line per call as it happens (number, method, root, keys), so a test
can find the call to kill at and show where a killed attempt stopped.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from pathlib import Path

from transforms.storage.roots import Root

# write_parquet goes through write_bytes, so it is counted there, once
MUTATING = ("write_bytes", "put_if_absent", "put_if_match", "move", "delete", "delete_folder")


def count_writes(kill_at: int, log_file: Path | None) -> list[int]:
    """Wrap the mutating methods of `Root`; returns the shared call counter (one element)."""
    calls = [0]

    def wrap(name: str):
        method = getattr(Root, name)

        @functools.wraps(method)
        def counted(self: Root, *args, **kwargs):
            calls[0] += 1
            if log_file is not None:
                shown = " ".join(str(a) for a in args if isinstance(a, (str, list)))
                with open(log_file, "a") as log:
                    log.write(f"{calls[0]} {name} {self.url} {shown[:300]}\n")
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return method(self, *args, **kwargs)

        return counted

    for name in MUTATING:
        setattr(Root, name, wrap(name))
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-at", type=int, required=True)
    parser.add_argument("--count-file", type=Path, required=True)
    parser.add_argument("--log-file", type=Path)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    args = options.args[1:] if options.args[:1] == ["--"] else options.args
    calls = count_writes(options.kill_at, options.log_file)

    from transforms.cli.app import app  # the `segments` entry point ([project.scripts])

    try:
        app(args=args, prog_name="segments")
    finally:
        options.count_file.write_text(f"{calls[0]}\n")


if __name__ == "__main__":
    sys.exit(main())
