"""The dedicated fuzzing run: N random examples per endpoint through every normalizer.

Usage: .venv/bin/python bench/fuzz.py [--examples 10000] [--endpoint /ivp/meters ...]

Same mutations and checks as tests/test_fuzz_normalizers.py (whose docstring lists them), with
hypothesis randomized. Prints, per endpoint, the examples run, the seconds taken and the failure (with the
falsifying source and body) if any; exits 1 when an endpoint failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_fuzz_normalizers import FUZZ_ENDPOINTS, fuzz_settings, make_fuzzer, sources, sources_with


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=10_000, help="examples per endpoint (default 10000)")
    parser.add_argument("--endpoint", action="append", choices=FUZZ_ENDPOINTS, help="only these endpoints")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    print(
        f"{len(sources())} sources (generated profiles + shared captures), {args.examples} examples per endpoint"
    )
    failed = 0
    total = time.monotonic()
    for endpoint in args.endpoint or FUZZ_ENDPOINTS:
        seen: dict[str, int] = {}
        started = time.monotonic()
        error = ""
        try:
            make_fuzzer(endpoint, fuzz_settings(args.examples), seen)()
        except Exception:  # report every endpoint, then fail
            error = traceback.format_exc()
            failed += 1
        seconds = time.monotonic() - started
        status = "FAILED" if error else "ok"
        print(
            f"{endpoint:32} sources {len(sources_with(endpoint)):3}  examples {seen.get(endpoint, 0):6}  "
            f"{seconds:7.1f} s  {status}",
            flush=True,
        )
        if error:
            print(error, flush=True)
    print(f"total {time.monotonic() - total:.1f} s, {failed} endpoint(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
