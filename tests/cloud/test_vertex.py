"""cloud.vertex, the submitter: flags, job files, the dry run and the submission, all offline.

The submitter runs as `python -m cloud.vertex` in subprocesses where the exit
code and stderr matter, and in-process (`main(argv)`) where the printed job is
compared with what the Vertex AI SDK would send.
"""
import json
import sys

import pytest

from cloud import vertex
from tests.helpers.cloud_jobs import BASE, IMAGE, REPO, dry_run, no_credentials_env, run_cli


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
        ["--job_file", "cloud/vertex_job_multiworker.yaml", "--image_uri", IMAGE, "--base_output_dir", BASE,
         "--display_name", "t2", "--", "--data_dir=gs://test-bucket/imagenet/tfrecords", "--epochs=2"],
    )
    spec = job["jobSpec"]
    chief, workers = spec["workerPoolSpecs"]  # exactly two pools
    assert chief["replicaCount"] == 1
    assert workers["replicaCount"] == 3
    args = ["--strategy=multi_worker_mirrored", "--batch_size=512", "--epochs=90", "--mixed_precision=float16",
            "--data_dir=gs://test-bucket/imagenet/tfrecords", "--epochs=2"]
    for pool in (chief, workers):
        assert pool["machineSpec"] == {"machineType": "n1-standard-32", "acceleratorType": "NVIDIA_TESLA_V100",
                                       "acceleratorCount": 4}
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


def test_submit_without_credentials_is_one_line_and_exit_2(tmp_path):
    result = run_cli(["--image_uri", IMAGE, "--base_output_dir", BASE, "--project", "p"], env=no_credentials_env(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cloud.vertex: error: no Google Cloud credentials")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_dry_run_needs_no_credentials(tmp_path):
    result = run_cli(["--image_uri", IMAGE, "--base_output_dir", BASE, "--dry_run"], env=no_credentials_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] == IMAGE


def test_submit_without_the_sdk_is_one_line_and_exit_2(monkeypatch, capsys):
    import google.cloud

    # An SDK-less environment: the import fails whether or not an earlier test imported it.
    monkeypatch.setitem(sys.modules, "google.cloud.aiplatform", None)
    monkeypatch.delattr(google.cloud, "aiplatform", raising=False)
    code = vertex.main(["--image_uri", IMAGE, "--base_output_dir", BASE, "--project", "p"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "submitting needs the Vertex AI SDK" in err, err


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
    "tensorboard without service account": (["--tensorboard", "projects/p/locations/r/tensorboards/1"],
                                            "only for jobs with a --service_account"),
    "tensorboard name": (["--tensorboard", "my-board", "--service_account", "a@p.iam.gserviceaccount.com"],
                         "expected --tensorboard as projects/"),
    "fixed-gpu machine type": (["--machine_type", "a2-highgpu-8g", "--gpus_per_machine", "4",
                                "--accelerator_type", "NVIDIA_TESLA_A100"],
                               "a2-highgpu-8g comes with 8 GPUs"),
    "unknown accelerator": (["--accelerator_type", "NVIDIA_TESLA_V1000"], "expected --accelerator_type in"),
    "strategy after --": (["--", "--strategy=mirrored"], "give the strategy to cloud.vertex"),
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
    expected = "cloud.vertex: error: --image_uri is required (on the command line or in --job_file)"
    assert result.stderr.strip().splitlines() == [expected]


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
