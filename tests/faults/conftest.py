import os
import re
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


class _Fails:
    def __init__(self, capsys, expected=2):
        self.capsys, self.expected = capsys, expected

    def status(self, expected):
        return _Fails(self.capsys, expected)

    def __call__(self, argv, pattern):
        self.capsys.readouterr()
        status = cli.main([str(a) for a in argv])
        err = self.capsys.readouterr().err
        assert "Traceback" not in err
        # what is left on stderr apart from progress bars (tqdm's lines end in its rate, "...it/s]")
        lines = [ln for ln in re.split(r"[\r\n]", err) if ln.strip() and not re.search(r"(it/s|s/it)\]$", ln)]
        assert status == self.expected, (status, lines)
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"deqfusion {argv[0]}: error: "), lines[0]
        assert re.search(pattern, lines[0]), lines[0]
        return lines[0]


@pytest.fixture
def fails(capsys):
    """``fails(argv, pattern)``: the command exits with status 2 (``fails.status(3)(...)``: 3) and prints exactly
    one line ``deqfusion <command>: error: ...`` matching ``pattern`` on stderr, no traceback. Returns that
    line."""
    return _Fails(capsys)
