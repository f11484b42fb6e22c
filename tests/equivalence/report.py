"""Regenerate docs/equivalence.md: run tests/equivalence with ENCDEC_WRITE_EQUIVALENCE=1.

    python tests/equivalence/report.py

The tests write the file in their module teardown only when that variable is set, so an
ordinary test run never changes the repository. Exits with pytest's status.
"""

import os
import subprocess
import sys


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, ENCDEC_WRITE_EQUIVALENCE="1")
    status = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", here], env=env)
    if status == 0:
        print(f"wrote {os.path.normpath(os.path.join(here, '..', '..', 'docs', 'equivalence.md'))}")
    return status


if __name__ == "__main__":
    sys.exit(main())
