"""Vertex AI submitter, cloudbuild.yaml, Dockerfile and .dockerignore, all offline.

The submitter runs as `python -m trainer.vertex` in subprocesses where the exit
code and stderr matter, and in-process (`main(argv)`) where the printed job is
compared with what the Vertex AI SDK would send.
"""
import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainer import vertex

REPO = Path(__file__).resolve().parents[1]
IMAGE = "us-central1-docker.pkg.dev/test-project/alexnet/alexnet-trainer:v1"
BASE = "gs://test-bucket/runs/v1"


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
        [sys.executable, "-m", "trainer.vertex", *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ---------------------------------------------------------------- job specs


def test_dry_run_one_machine_eight_gpus_mirrored(capsys):
    job = dry_run(
        capsys,
        ["--job_file", "cloud/vertex_job_mirrored.yaml", "--image_uri", IMAGE, "--base_output_dir", BASE, "--display_name", "t1",
         "--", "--data_dir=gs://test-bucket/imagenet/tfrecords"],
    )
    assert job["displayName"] == "t1"
    spec = job["jobSpec"]
    assert spec["baseOutputDirectory"] == {"outputUriPrefix": BASE}
    assert spec["scheduling"] == {"restartJobOnWorkerRestart": True}
    assert "tensorboard" not in spec and "serviceAccount" not in spec
    assert len(spec["workerPoolSpecs"]) == 1
    (pool,) = spec["workerPoolSpecs"]
    assert pool["replicaCount"] == 1
    assert pool["machineSpec"] == {"machineType": "n1-standard-64", "acceleratorType": "NVIDIA_TESLA_V100", "acceleratorCount": 8}
    assert pool["containerSpec"] == {
        "imageUri": IMAGE,
        # The strategy first, then the job file's trainer flags, then the command line's.
        "args": ["--strategy=mirrored", "--batch_size=128", "--epochs=90", "--mixed_precision=float16",
                 "--data_dir=gs://test-bucket/imagenet/tfrecords"],
    }


def test_dry_run_four_machines_four_gpus_multi_worker(capsys):
    job = dry_run(
        capsys,
        ["--job_file", "cloud/vertex_job_multiworker.yaml", "--image_uri", IMAGE, "--base_output_dir", BASE, "--display_name", "t2",
         "--", "--data_dir=gs://test-bucket/imagenet/tfrecords", "--epochs=2"],
    )
    spec = job["jobSpec"]
    chief, workers = spec["workerPoolSpecs"]  # exactly two pools
    assert chief["replicaCount"] == 1
    assert workers["replicaCount"] == 3
    args = ["--strategy=multi_worker_mirrored", "--batch_size=512", "--epochs=90", "--mixed_precision=float16",
            "--data_dir=gs://test-bucket/imagenet/tfrecords", "--epochs=2"]
    for pool in (chief, workers):
        assert pool["machineSpec"] == {"machineType": "n1-standard-32", "acceleratorType": "NVIDIA_TESLA_V100", "acceleratorCount": 4}
        assert pool["containerSpec"] == {"imageUri": IMAGE, "args": args}
    assert spec["baseOutputDirectory"] == {"outputUriPrefix": BASE}
    assert spec["scheduling"] == {"restartJobOnWorkerRestart": True}


def test_command_line_overrides_job_file(capsys):
    job = dry_run(
        capsys,
        ["--job_file", "cloud/vertex_job_multiworker.yaml", "--machines", "8", "--gpus_per_machine", "2",
         "--accelerator_type", "NVIDIA_L4", "--machine_type", "g2-standard-24", "--no-restart_on_worker_failure",
         "--image_uri", IMAGE, "--base_output_dir", BASE, "--display_name", "t3"],
    )
    spec = job["jobSpec"]
    assert [p["replicaCount"] for p in spec["workerPoolSpecs"]] == [1, 7]
    assert {json.dumps(p["machineSpec"], sort_keys=True) for p in spec["workerPoolSpecs"]} == {
        json.dumps({"machineType": "g2-standard-24", "acceleratorType": "NVIDIA_L4", "acceleratorCount": 2}, sort_keys=True)
    }
    assert "scheduling" not in spec


def test_build_job_spec_cpu_only_with_tensorboard():
    spec = vertex.build_job_spec(
        display_name="cpu",
        image_uri="img:1",
        base_output_dir="gs://b/out",
        strategy="multi_worker_mirrored",
        machines=2,
        gpus_per_machine=0,
        machine_type="n2-standard-16",
        accelerator_type="ignored for CPU machines",
        trainer_args=["--epochs=1"],
        tensorboard="projects/p/locations/europe-west4/tensorboards/42",
        service_account="trainer@p.iam.gserviceaccount.com",
        restart_on_worker_failure=False,
    )
    assert spec == {
        "displayName": "cpu",
        "jobSpec": {
            "workerPoolSpecs": [
                {"machineSpec": {"machineType": "n2-standard-16"}, "replicaCount": 1,
                 "containerSpec": {"imageUri": "img:1", "args": ["--strategy=multi_worker_mirrored", "--epochs=1"]}},
                {"machineSpec": {"machineType": "n2-standard-16"}, "replicaCount": 1,
                 "containerSpec": {"imageUri": "img:1", "args": ["--strategy=multi_worker_mirrored", "--epochs=1"]}},
            ],
            "baseOutputDirectory": {"outputUriPrefix": "gs://b/out"},
            "serviceAccount": "trainer@p.iam.gserviceaccount.com",
            "tensorboard": "projects/p/locations/europe-west4/tensorboards/42",
        },
    }
    # The pools are independent copies: editing one (as the proto parser's callers may) leaves the other alone.
    spec["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"].append("--x")
    assert spec["jobSpec"]["workerPoolSpecs"][1]["containerSpec"]["args"] == ["--strategy=multi_worker_mirrored", "--epochs=1"]


def test_accelerator_names_are_members_of_the_sdk_enum():
    from google.cloud.aiplatform_v1.types import AcceleratorType

    members = {m.name for m in AcceleratorType}
    assert set(vertex.ACCELERATOR_TYPES) <= members, sorted(set(vertex.ACCELERATOR_TYPES) - members)


def test_dry_run_json_parses_into_the_v1_custom_job_proto(capsys):
    job = dry_run(capsys, ["--job_file", "cloud/vertex_job_multiworker.yaml", "--image_uri", IMAGE, "--base_output_dir", BASE,
                           "--display_name", "p"])
    proto = vertex.to_proto(job)  # rejects unknown keys and enum names
    assert [p.replica_count for p in proto.job_spec.worker_pool_specs] == [1, 3]
    assert proto.job_spec.worker_pool_specs[1].machine_spec.accelerator_type.name == "NVIDIA_TESLA_V100"
    assert proto.job_spec.base_output_directory.output_uri_prefix == BASE


def test_submission_sends_exactly_the_dry_run_job(capsys, monkeypatch):
    """Without --dry_run the SDK's create request carries the same CustomJob the dry run printed."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

    argv = ["--job_file", "cloud/vertex_job_multiworker.yaml", "--image_uri", IMAGE, "--base_output_dir", BASE,
            "--display_name", "same", "--tensorboard", "projects/p/locations/us-central1/tensorboards/7",
            "--service_account", "sa@p.iam.gserviceaccount.com", "--project", "test-project", "--region", "europe-west4",
            "--", "--data_dir=gs://test-bucket/imagenet/tfrecords"]
    printed = dry_run(capsys, argv)

    sent = []

    def fake_create(self, request=None, *, parent=None, custom_job=None, **kwargs):
        sent.append((parent, type(custom_job).deserialize(type(custom_job).serialize(custom_job))))
        custom_job.name = parent + "/customJobs/1"
        return custom_job

    monkeypatch.setattr(google.auth, "default", lambda scopes=None: (AnonymousCredentials(), "credentials-project"))
    monkeypatch.setattr(JobServiceClient, "create_custom_job", fake_create)
    monkeypatch.chdir(REPO)
    assert vertex.main(argv) == 0
    assert "created projects/test-project/locations/europe-west4/customJobs/1" in capsys.readouterr().out
    ((parent, proto),) = sent
    assert parent == "projects/test-project/locations/europe-west4"
    assert proto == vertex.to_proto(printed)
    assert proto.job_spec.scheduling.restart_job_on_worker_restart is True
    assert proto.job_spec.tensorboard == "projects/p/locations/us-central1/tensorboards/7"


def test_mistyped_region_is_one_line_and_exit_2_before_anything_is_sent(capsys, monkeypatch):
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

    def fail_create(*args, **kwargs):
        raise AssertionError("a job was sent to a mistyped region")

    monkeypatch.setattr(google.auth, "default", lambda scopes=None: (AnonymousCredentials(), "credentials-project"))
    monkeypatch.setattr(JobServiceClient, "create_custom_job", fail_create)
    monkeypatch.chdir(REPO)
    argv = ["--image_uri", IMAGE, "--base_output_dir", BASE, "--project", "test-project", "--region", "us-centrall"]
    assert vertex.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == "", captured.err
    assert "--region 'us-centrall' is not a Vertex AI region" in lines[0] and "us-central1" in lines[0]
    assert vertex.check_region("europe-west4") is None


def _no_credentials_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "CLOUDSDK_", "GCE_"))}
    env.update(
        HOME=str(tmp_path),  # no ~/.config/gcloud application default credentials
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        NO_GCE_CHECK="true",  # google-auth: do not probe the metadata server (no hang offline)
        GCE_METADATA_HOST="127.0.0.1:9",
        GCE_METADATA_IP="127.0.0.1:9",
    )
    return env


def test_submit_without_credentials_is_one_line_and_exit_2(tmp_path):
    result = run_cli(["--image_uri", IMAGE, "--base_output_dir", BASE, "--project", "p"], env=_no_credentials_env(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("trainer.vertex: error: no Google Cloud credentials")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_dry_run_needs_no_credentials(tmp_path):
    result = run_cli(["--image_uri", IMAGE, "--base_output_dir", BASE, "--dry_run"], env=_no_credentials_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] == IMAGE


def _job_file(tmp_path, text):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return str(path)


BAD_ARGS = {
    "mirrored on two machines": (["--machines", "2"], "--strategy mirrored trains on one machine"),
    "multi-worker on one machine": (["--strategy", "multi_worker_mirrored", "--machines", "1"], "needs --machines >= 2"),
    "local output dir": (["--base_output_dir", "/tmp/out"], "expected --base_output_dir as gs://"),
    "unknown flag": (["--gpus", "8"], "unrecognized arguments: --gpus 8"),
    "abbreviated flag": (["--dry_ru"], "unrecognized arguments: --dry_ru"),
    "bad strategy": (["--strategy", "tpu"], "invalid choice: 'tpu'"),
    "not a number": (["--machines", "four"], "invalid int value: 'four'"),
    "tensorboard without service account": (["--tensorboard", "projects/p/locations/r/tensorboards/1"], "only for jobs with a --service_account"),
    "tensorboard name": (["--tensorboard", "my-board", "--service_account", "a@p.iam.gserviceaccount.com"], "expected --tensorboard as projects/"),
    "fixed-gpu machine type": (["--machine_type", "a2-highgpu-8g", "--gpus_per_machine", "4", "--accelerator_type", "NVIDIA_TESLA_A100"],
                               "a2-highgpu-8g comes with 8 GPUs"),
    "unknown accelerator": (["--accelerator_type", "NVIDIA_TESLA_V1000"], "expected --accelerator_type in"),
    "strategy after --": (["--", "--strategy=mirrored"], "give the strategy to trainer.vertex"),
    "model_dir after --": (["--", "--model_dir", "gs://b/m"], "would override AIP_MODEL_DIR"),
    "job file missing": (["--job_file", "cloud/no_such_job.yaml"], "cannot read --job_file cloud/no_such_job.yaml"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGS))
def test_user_errors_are_one_line_and_exit_2(case):
    extra, message = BAD_ARGS[case]
    # Later flags win, so `extra` overrides the valid base values.
    result = run_cli(["--image_uri", IMAGE, "--base_output_dir", BASE, "--dry_run"] + extra)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0], lines[0]
    assert result.stdout == ""


def test_missing_image_uri_is_a_flag_error():
    result = run_cli(["--base_output_dir", BASE, "--dry_run"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["trainer.vertex: error: --image_uri is required (on the command line or in --job_file)"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("gpus: 8\n", "unknown key 'gpus'"),
        ("machines: [1, 2]\n", "expected machines in"),
        ("restart_on_worker_failure: maybe\n", "expected restart_on_worker_failure: true or false"),
        ("trainer_args: --epochs=1\n", "expected trainer_args in"),
        ("- strategy\n", "to hold a YAML mapping"),
        ("dry_run: true\n", "unknown key 'dry_run'"),
    ],
)
def test_bad_job_files_are_one_line_and_exit_2(tmp_path, text, message):
    result = run_cli(["--job_file", _job_file(tmp_path, text), "--image_uri", IMAGE, "--base_output_dir", BASE, "--dry_run"])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_job_files_in_the_repo_use_only_known_keys():
    files = sorted((REPO / "cloud").glob("*.yaml"))
    assert [f.name for f in files] == ["vertex_job_mirrored.yaml", "vertex_job_multiworker.yaml"]
    for path in files:
        argv, trainer_args = vertex.read_job_file(str(path), vertex._parser())
        assert any(a.startswith("--strategy=") for a in argv)
        assert trainer_args and all(a.startswith("--") for a in trainer_args)


# ---------------------------------------------------------------- cloudbuild.yaml

BUILTINS = {"PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION"}
_SUBST = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _cloudbuild():
    return yaml.safe_load((REPO / "cloudbuild.yaml").read_text())


def _substitute(text, values):
    def one(m):
        name = m.group(1) or m.group(2)
        return values[name]

    return _SUBST.sub(one, text)


def test_cloudbuild_substitutions_are_all_defined_and_all_used():
    build = _cloudbuild()
    defined = set(build["substitutions"])
    used = {m.group(1) or m.group(2) for s in _strings({k: v for k, v in build.items() if k != "substitutions"}) for m in _SUBST.finditer(s)}
    assert {"_REGION", "_REPOSITORY", "_TAG", "_BUCKET"} <= defined
    assert used - BUILTINS == defined  # Cloud Build also rejects defined-but-unused substitutions
    assert used & BUILTINS == {"PROJECT_ID", "BUILD_ID"}  # the built-ins the image name and output paths need
    assert all(name.startswith("_") for name in defined)
    optional = {"_TENSORBOARD", "_SERVICE_ACCOUNT"}  # empty means "none"
    assert all(value for name, value in build["substitutions"].items() if name not in optional)
    assert all(build["substitutions"][name] == "" for name in optional)


TENSORBOARD = {"_TENSORBOARD": "projects/p/locations/us-central1/tensorboards/5", "_SERVICE_ACCOUNT": "t@p.iam.gserviceaccount.com"}


@pytest.mark.parametrize(
    "overrides, pools",
    [({}, [1]), ({"_JOB_FILE": "cloud/vertex_job_multiworker.yaml", "_TAG": "v2", "_BUCKET": "b2", **TENSORBOARD}, [1, 3])],
)
def test_cloudbuild_pushes_the_image_its_job_runs(capsys, overrides, pools):
    build = _cloudbuild()
    values = dict(build["substitutions"], PROJECT_ID="test-project", BUILD_ID="b-123")
    values.update(overrides)  # what --substitutions=... does
    steps = {s["id"]: s for s in build["steps"]}
    assert list(steps) == ["check-bucket", "build", "push", "submit"]

    image = values["_REGION"] + "-docker.pkg.dev/test-project/" + values["_REPOSITORY"] + "/alexnet-trainer:" + values["_TAG"]
    build_args = [_substitute(a, values) for a in steps["build"]["args"]]
    assert build_args[:3] == ["build", "-t", image] and build_args[-1] == "."
    assert [_substitute(a, values) for a in steps["push"]["args"]] == ["push", image]
    assert [_substitute(a, values) for a in build["images"]] == [image]
    assert _substitute(steps["submit"]["name"], values) == image  # the submitter runs in the image just pushed

    # Run the submit step's own `python -m trainer.vertex` command, as a dry run.
    script = _substitute(steps["submit"]["args"][-1], values)
    assert steps["submit"]["entrypoint"] == "bash" and steps["submit"]["args"][0] == "-c"
    install, submit = script.split("&&")
    # The submitter's requirements are the setup.py cloud extra's, with its ranges:
    # the Vertex AI SDK, and pyyaml for the --job_file it reads.
    extra = re.search(r'"cloud":\s*(\[[^\]]*\])', (REPO / "setup.py").read_text())
    cloud = ast.literal_eval(extra.group(1))
    assert {"google-cloud-aiplatform>=1.70,<3", "pyyaml>=6,<7"} <= set(cloud)
    words = shlex.split(install)
    assert words[:4] == ["python", "-m", "pip", "install"], install
    assert sorted(w for w in words[4:] if not w.startswith("-")) == sorted(cloud), install
    tokens = shlex.split(submit)
    assert tokens[:3] == ["python", "-m", "trainer.vertex"]
    job = dry_run(capsys, tokens[3:])
    spec = job["jobSpec"]
    assert [p["replicaCount"] for p in spec["workerPoolSpecs"]] == pools
    assert {p["containerSpec"]["imageUri"] for p in spec["workerPoolSpecs"]} == {image}
    assert spec["baseOutputDirectory"]["outputUriPrefix"] == "gs://%s/runs/%s-b-123" % (values["_BUCKET"], values["_TAG"])
    data_dir = "--data_dir=gs://%s/imagenet/tfrecords" % values["_BUCKET"]
    assert all(p["containerSpec"]["args"][-1] == data_dir for p in spec["workerPoolSpecs"])
    assert job["displayName"] == "alexnet-%s-b-123" % values["_TAG"]
    assert spec.get("tensorboard", "") == values["_TENSORBOARD"]
    assert spec.get("serviceAccount", "") == values["_SERVICE_ACCOUNT"]
    check = [_substitute(a, values) for a in steps["check-bucket"]["args"]]
    assert "gs://" + values["_BUCKET"] in check


# ---------------------------------------------------------------- Dockerfile and .dockerignore


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


def _setup_packages():
    text = (REPO / "setup.py").read_text()
    include = re.search(r"find_packages\(include=\[([^\]]*)\]", text).group(1)
    return sorted(p.strip().strip("\"'").rstrip("*") for p in include.split(","))


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
    assert sources == sorted(["setup.py"] + _setup_packages())
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
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    kept = ["setup.py", "trainer/vertex.py", "trainer/__init__.py", "model/alexnet.py", "preprocessing/schema.py"]
    kept += ["%s/__init__.py" % p for p in _setup_packages()]
    for path in kept:
        assert not _dockerignore_excludes(patterns, path), path
    dropped = [".venv/bin/python", ".git/HEAD", "runs/alexnet/checkpoints/ckpt-1.index", "demo_data/train-00000-of-00001",
               "README.md", "cloudbuild.yaml", "trainer/__pycache__/vertex.cpython-311.pyc", "model/x.pyc"]
    dropped += ["tests/" + p.name for p in (REPO / "tests").glob("*.py")]
    for path in dropped:
        assert _dockerignore_excludes(patterns, path), path


# ---------------------------------------------------------------- README "Running on Google Cloud"

SHELL_VALUES = {
    "PROJECT": "test-project",
    "REGION": "us-central1",
    "BUCKET": "test-bucket",
    "REPO": "alexnet",
    "PROJECT_NUMBER": "123",
    "COMPUTE_SA": "123-compute@developer.gserviceaccount.com",
    "BUILD_SA": "build@test-project.iam.gserviceaccount.com",
    "TRAINER_SA": "alexnet-trainer@test-project.iam.gserviceaccount.com",
}


def _readme_commands(prefix):
    """The README cloud section's shell commands starting with `prefix`, variables filled in, as argv lists."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("<!-- section: cloud -->") : text.index("<!-- section: experiments -->")]
    out = []
    for block in re.findall(r"```\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith(prefix):
                out.append(shlex.split(re.sub(r"\$([A-Z_]+)", lambda m: SHELL_VALUES[m.group(1)], line)))
    assert out, "no %r command in the README's cloud section" % prefix
    return out


def test_readme_cloud_build_commands_use_defined_substitutions():
    defined = set(_cloudbuild()["substitutions"])
    for argv in _readme_commands("gcloud builds submit"):
        assert argv[3:5] == ["--config", "cloudbuild.yaml"], argv
        (subs,) = [a[len("--substitutions="):] for a in argv if a.startswith("--substitutions=")]
        keys = [pair.split("=", 1)[0] for pair in subs.split(",")]
        assert "_TAG" in keys and "_BUCKET" in keys
        assert set(keys) <= defined, set(keys) - defined


def test_readme_submitter_command_makes_the_multi_worker_job(capsys):
    (argv,) = _readme_commands("python -m trainer.vertex")
    job = dry_run(capsys, argv[3:])
    pools = job["jobSpec"]["workerPoolSpecs"]
    assert [p["replicaCount"] for p in pools] == [1, 3]
    assert {p["containerSpec"]["imageUri"] for p in pools} == {"us-central1-docker.pkg.dev/test-project/alexnet/alexnet-trainer:v1"}
    for pool in pools:
        assert pool["containerSpec"]["args"][-4:] == ["--data_dir", "gs://test-bucket/imagenet/tfrecords", "--epochs", "45"]
    assert job["jobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": "gs://test-bucket/runs/v1-multi"}


def test_readme_dataflow_command_parses(capsys):
    """Every flag of the README's Dataflow command is the job's own or one of Beam's, with the values meant."""
    from apache_beam.options import pipeline_options as po

    from preprocessing import build_tfrecords

    (argv,) = _readme_commands("python -m preprocessing.build_tfrecords")
    with pytest.raises(SystemExit) as exit_info:
        build_tfrecords.run(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    flags = [a.split("=", 1)[0] for a in argv[3:] if a.startswith("--")]
    job_flags = [f for f in flags if re.search(r"(^|\s|\[)%s[\s=\]]" % re.escape(f), help_text)]
    assert job_flags == ["--train_dir", "--val_dir", "--val_labels", "--synsets", "--output_dir"]
    options = po.PipelineOptions(argv[3:])
    known = set(options.get_all_options())
    assert {f[2:] for f in flags if f not in job_flags} <= known
    assert options.view_as(po.StandardOptions).runner == "DataflowRunner"
    gcp = options.view_as(po.GoogleCloudOptions)
    assert (gcp.project, gcp.region, gcp.temp_location) == ("test-project", "us-central1", "gs://test-bucket/tmp")
    assert options.view_as(po.SetupOptions).setup_file == "./setup.py" and (REPO / "setup.py").is_file()
    values = dict(zip(argv[3:], argv[4:]))
    assert all(values[f].startswith("gs://test-bucket/imagenet/") for f in job_flags)


def test_submit_without_the_sdk_is_one_line_and_exit_2(monkeypatch, capsys):
    import google.cloud

    # An SDK-less environment: the import fails whether or not an earlier test imported it.
    monkeypatch.setitem(sys.modules, "google.cloud.aiplatform", None)
    monkeypatch.delattr(google.cloud, "aiplatform", raising=False)
    code = vertex.main(["--image_uri", IMAGE, "--base_output_dir", BASE, "--project", "p"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "submitting needs the Vertex AI SDK" in err, err
