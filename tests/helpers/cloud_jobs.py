"""Shared helpers of the cloud tests: the submitter run in-process and as a subprocess,
an environment without Google Cloud credentials, and cloudbuild.yaml's substitutions.

The submitter runs as `python -m cloud.vertex` in subprocesses where the exit code
and stderr matter, and in-process (`main(argv)`) where the printed job is compared
with what the Vertex AI SDK would send.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from cloud import vertex

REPO = Path(__file__).resolve().parents[2]
IMAGE = "us-central1-docker.pkg.dev/test-project/alexnet/alexnet-trainer:v1"
BASE = "gs://test-bucket/runs/v1"

# Cloud Build's own substitutions (the rest must be defined in cloudbuild.yaml).
BUILTINS = {"PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION"}
SUBSTITUTION = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def dry_run(capsys, argv):
    """Runs main(argv + --dry_run) in-process from the repo root and returns the printed job."""
    cwd = os.getcwd()
    os.chdir(REPO)  # job files are given relative to the repository, as in cloudbuild.yaml
    try:
        code = vertex.main(["--dry_run"] + list(argv))  # flags before any "--" belong to the submitter
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def run_cli(args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "cloud.vertex", *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def no_credentials_env(home, base_env=None):
    """`base_env` (default: this process's) with no Google Cloud credentials to find under `home`."""
    env = {k: v for k, v in (os.environ if base_env is None else base_env).items()
           if not k.startswith(("GOOGLE_", "CLOUDSDK_", "GCE_"))}
    env.update(
        HOME=str(home),  # no ~/.config/gcloud application default credentials
        CLOUDSDK_CONFIG=str(Path(home) / "gcloud"),
        NO_GCE_CHECK="true",  # google-auth: do not probe the metadata server (no hang offline)
        GCE_METADATA_HOST="127.0.0.1:9",
        GCE_METADATA_IP="127.0.0.1:9",
    )
    return env


def cloudbuild():
    return yaml.safe_load((REPO / "cloudbuild.yaml").read_text())


def substitute(text, values):
    """`text` with Cloud Build's $NAME and ${NAME} replaced from `values`."""

    def one(m):
        name = m.group(1) or m.group(2)
        return values[name]

    return SUBSTITUTION.sub(one, text)


def setup_packages():
    """The top-level packages setup.py's find_packages(include=[...]) names."""
    text = (REPO / "setup.py").read_text()
    include = re.search(r"find_packages\(\s*include=\[([^\]]*)\]", text).group(1)
    return sorted(p.strip().strip("\"'").rstrip("*") for p in include.split(","))
