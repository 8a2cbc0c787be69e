"""Run ``sample_unguarded.py`` for entry points x ways of running, by hand (not in CI).

``python tests/scripts/run_matrix.py [ENTRY,...] [WAY,...]`` prints one line per cell:
the posterior means, or the tail of the error. Ways: ``file``, ``guarded``, ``stdin``,
``dash_c``, ``notebook``. Each run has its own session and a 600 s limit.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests import _subprocess
from tests.test_multiprocess import _NOTEBOOK

SCRIPT = Path(__file__).with_name("sample_unguarded.py")


def _args(way: str, entry: str, tmp: Path) -> tuple[list[str], str | None]:
    source = SCRIPT.read_text()
    if way == "file":
        return [str(SCRIPT), entry], None
    if way == "guarded":
        guarded = tmp / "guarded_script.py"
        guarded.write_text('if __name__ == "__main__":\n' + textwrap.indent(source, "    "))
        return [str(guarded), entry], None
    if way == "stdin":
        return ["-", entry], source
    if way == "dash_c":
        return ["-c", source, entry], None
    notebook = _NOTEBOOK.format(script=str(SCRIPT)).replace('"nuts"', repr(entry))
    return ["-c", notebook], None


def main() -> None:
    entries = sys.argv[1] if len(sys.argv) > 1 else "ppc,smc,demetropolis,demetropolisz"
    ways = sys.argv[2] if len(sys.argv) > 2 else "file,guarded,stdin,dash_c,notebook"
    tmp = Path(tempfile.mkdtemp())
    for entry in entries.split(","):
        for way in ways.split(","):
            args, stdin = _args(way, entry, tmp)
            result = _subprocess.run(args, timeout=600, stdin=stdin)
            lines = [x for x in result.out.splitlines() if x.startswith("RESULT")]
            status = lines[-1] if result.returncode == 0 and lines else result.err[-500:]
            print(f"{entry:15s} {way:9s} rc={result.returncode} orphans={result.orphans} {status}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
