"""The trainer image's Dockerfile and .dockerignore: built from setup.py's packages, nothing else sent or installed."""
import json
import re

from tests.helpers.cloud_jobs import REPO, setup_packages


def _dockerfile_instructions():
    text = (REPO / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_builds_from_setup_py_on_a_tf_2_21_gpu_base():
    instructions = _dockerfile_instructions()
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for word, rest in instructions if word == "ARG" and "=" in rest}
    assert args["BASE_IMAGE"] == "tensorflow/tensorflow:2.21.0-gpu"
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert froms == ["${BASE_IMAGE} AS wheel", "${BASE_IMAGE}"]  # two stages, the last is the runtime
    entrypoints = [rest for word, rest in instructions if word == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoints] == [["python", "-m", "trainer.task"]]
    task = (REPO / "trainer" / "task.py").read_text()  # the entry point module exists and runs main()
    assert "def main(argv=None)" in task and 'if __name__ == "__main__":' in task

    copies = [rest.split() for word, rest in instructions if word == "COPY"]
    local = [c for c in copies if not c[0].startswith("--from")]
    sources = sorted(src for c in local for src in c[:-1])
    for src in sources:
        assert (REPO / src).exists(), src
    # Every package setup.py ships is in the build stage, and nothing else (no tests, no data).
    assert sources == sorted(["setup.py"] + setup_packages())
    # The runtime stage gets only the wheel.
    runtime = instructions[[i for i, (w, _) in enumerate(instructions) if w == "FROM"][-1]:]
    assert [c.split() for w, c in runtime if w == "COPY"] == [["--from=wheel", "/wheels", "/tmp/wheels"]]
    runs = " ".join(rest for word, rest in runtime if word == "RUN")
    assert "pip install --no-cache-dir /tmp/wheels/*.whl" in runs and "rm -rf /tmp/wheels" in runs
    assert " -e " not in runs and "[dev]" not in runs


def _dockerignore_excludes(patterns, path):
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern[1:] if negate else pattern
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not negate
    return excluded


def test_dockerignore_sends_only_the_packages():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    kept = ["setup.py", "cloud/vertex.py", "cloud/job_spec.py", "trainer/__init__.py", "model/alexnet.py",
            "preprocessing/schema.py"]
    kept += ["%s/__init__.py" % p for p in setup_packages()]
    for path in kept:
        assert not _dockerignore_excludes(patterns, path), path
    dropped = [".venv/bin/python", ".git/HEAD", "runs/alexnet/checkpoints/ckpt-1.index", "demo_data/train-00000-of-00001",
               "README.md", "cloudbuild.yaml", "cloud/__pycache__/vertex.cpython-311.pyc", "model/x.pyc",
               "docs/cloud.md", "tests/cloud/test_vertex.py"]
    dropped += ["tests/" + p.name for p in (REPO / "tests").glob("*.py")]
    for path in dropped:
        assert _dockerignore_excludes(patterns, path), path
