"""Every benchmark script parses its arguments (catches broken imports without running it)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py"))

# One child imports torch and numpy once, then forks a fresh copy of itself per script and runs
# it as `python benchmarks/SCRIPT --help` would (its folder first on sys.path, as __main__),
# saving what it printed and its exit code: one torch import instead of one per script.
_CHILD = """
import os, runpy, sys
import numpy, torch  # noqa: F401
out = sys.argv[1]
for script in sys.argv[2:]:
    pid = os.fork()
    if pid == 0:
        name = os.path.join(out, os.path.basename(script))
        fd = os.open(name + ".txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.argv, sys.path[0], code = [script, "--help"], os.path.dirname(script), 0
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    with open(os.path.join(out, os.path.basename(script) + ".rc"), "w") as fh:
        fh.write(str(os.waitstatus_to_exitcode(status)))
"""


@pytest.fixture(scope="module")
def helps(tmp_path_factory):
    out = tmp_path_factory.mktemp("help")
    paths = [str(ROOT / "benchmarks" / s) for s in SCRIPTS]
    run = subprocess.run([sys.executable, "-c", _CHILD, str(out), *paths], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return out


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_imports(helps, script):
    printed = (helps / f"{script}.txt").read_text()
    assert (helps / f"{script}.rc").read_text() == "0", printed[-2000:]
    assert "usage" in printed.lower()
