"""Shared by the dev scripts: run the calling script inside its own venv with its packages."""
import os
import subprocess
import sys
import venv


def ensure_venv(directory, packages):
    """Creates `directory` as a venv with `packages` on first use, then re-runs the script in it."""
    python = os.path.join(directory, "bin", "python")
    if not os.path.exists(python):
        venv.create(directory, with_pip=True)
        subprocess.check_call([python, "-m", "pip", "install", "-q", *packages], stdout=sys.stderr)
    if os.path.realpath(sys.executable) != os.path.realpath(python):
        os.execv(python, [python, *sys.argv])
