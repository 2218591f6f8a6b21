"""Shell completion through a real bash: the script ``_CHAOSMESH_QA_COMPLETE=bash_source chaosmesh-qa`` prints,
sourced as a user's ~/.bashrc would, completes commands, options, fault kinds and the mesh's services by
running the installed ``chaosmesh-qa`` (click writes the script only after asking bash for its version, so
this starts processes: the in-process checks of the answers are in test_conventions.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.processes

BIN = Path(sys.executable).parent  # the venv's bin: the installed chaosmesh-qa, as a user's PATH finds it


def complete(words: list[str], tmp_path: Path) -> list[str]:
    """COMPREPLY after bash completes the last of ``words`` with the sourced completion script."""
    script = ('source <(_CHAOSMESH_QA_COMPLETE=bash_source chaosmesh-qa) || exit 3\n'
              'complete -p chaosmesh-qa >/dev/null || exit 4\n'
              'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))\n'
              '_chaosmesh_qa_completion chaosmesh-qa\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOSMESH_QA_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", *words], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (result.returncode, result.stderr)
    return [line for line in result.stdout.splitlines() if line]


def test_bash_completes_commands_options_kinds_and_services(tmp_path: Path) -> None:
    assert complete(["chaosmesh-qa", "ne"], tmp_path) == ["new"]
    assert {"env", "new", "up", "down", "status", "verdict"} <= set(complete(["chaosmesh-qa", ""], tmp_path))
    assert complete(["chaosmesh-qa", "new", "--fault", "lat"], tmp_path) == ["latency"]
    assert complete(["chaosmesh-qa", "new", "--fault", "abort", "--service", "inv"], tmp_path) == ["inventory"]
    assert "--version" in complete(["chaosmesh-qa", "--"], tmp_path)
