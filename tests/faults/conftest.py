import os
import shutil

import pytest

from deqfusion import cli


def copy_folder(src, dst):
    """A writable copy of a (read-only) data folder."""
    shutil.copytree(src, dst)
    for root, _, files in os.walk(dst):
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    return dst


@pytest.fixture
def fails(capsys):
    """``fails(argv, pattern)``: the command exits with status 2 and prints exactly one line
    ``deqfusion <command>: error: ...`` matching ``pattern`` on stderr, no traceback. Returns that line."""
    import re

    def check(argv, pattern):
        capsys.readouterr()
        status = cli.main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert status == 2, (status, lines)
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"deqfusion {argv[0]}: error: "), lines[0]
        assert re.search(pattern, lines[0]), lines[0]
        return lines[0]

    return check
