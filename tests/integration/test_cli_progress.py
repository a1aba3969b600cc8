"""``ledger append FILE`` shows its progress on a terminal, and nothing extra elsewhere."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tests.support import answers, catalogue, cli, complete, refund


def commands_file(tmp_path: Path) -> Path:
    """Five catalogue lines, 60 purchases and a refund beyond the amount paid (rejected)."""
    lines = [*catalogue(), *(complete(f"pi_progress_{n}") for n in range(60))]
    lines.append(refund("pi_progress_0", "re_too_much", 10**6))
    path = tmp_path / "commands.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_a_terminal_shows_lines_done_rate_and_rejections(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    path = commands_file(tmp_path)
    terminal, stderr = pty.openpty()
    fcntl.ioctl(stderr, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "ledger", "append", str(path)],
        env=cli_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    os.close(stderr)
    drawn = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        drawn += chunk
    os.close(terminal)
    assert process.stdout is not None
    out = process.stdout.read().decode()
    assert process.wait(timeout=60) == 1
    assert len(answers(out)) == 66  # the answers are untouched on stdout
    final = drawn.decode().replace("\r\n", "\r").split("\r")
    last = [screen for screen in final if screen.strip()][-1]
    assert "100%" in last and "66/66" in last, last  # lines done, of the file's lines
    assert "lines/s" in last  # the rate
    assert "1 rejected" in last


def test_a_pipe_gets_nothing_but_the_answers(cli_env: dict[str, str], tmp_path: Path) -> None:
    done = cli(cli_env, "append", str(commands_file(tmp_path)))
    assert done.returncode == 1
    assert done.stderr == ""
    assert len(answers(done.stdout)) == 66
