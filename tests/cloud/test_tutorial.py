"""docs/cloud.md, the Google Cloud tutorial: its Cloud Build, submitter and Dataflow commands, run or parsed."""
import re
import shlex

import pytest

from tests.helpers.cloud_jobs import REPO, cloudbuild, dry_run

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


def _tutorial_commands(prefix):
    """The tutorial's shell commands starting with `prefix`, variables filled in, as argv lists."""
    text = (REPO / "docs" / "cloud.md").read_text()
    out = []
    for block in re.findall(r"```\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith(prefix):
                out.append(shlex.split(re.sub(r"\$([A-Z_]+)", lambda m: SHELL_VALUES[m.group(1)], line)))
    assert out, "no %r command in docs/cloud.md" % prefix
    return out


def test_tutorial_cloud_build_commands_use_defined_substitutions():
    defined = set(cloudbuild()["substitutions"])
    for argv in _tutorial_commands("gcloud builds submit"):
        assert argv[3:5] == ["--config", "cloudbuild.yaml"], argv
        (subs,) = [a[len("--substitutions="):] for a in argv if a.startswith("--substitutions=")]
        keys = [pair.split("=", 1)[0] for pair in subs.split(",")]
        assert "_TAG" in keys and "_BUCKET" in keys
        assert set(keys) <= defined, set(keys) - defined


def test_tutorial_submitter_command_makes_the_multi_worker_job(capsys):
    (argv,) = _tutorial_commands("python -m cloud.vertex")
    job = dry_run(capsys, argv[3:])
    pools = job["jobSpec"]["workerPoolSpecs"]
    assert [p["replicaCount"] for p in pools] == [1, 3]
    image = "us-central1-docker.pkg.dev/test-project/alexnet/alexnet-trainer:v1"
    assert {p["containerSpec"]["imageUri"] for p in pools} == {image}
    for pool in pools:
        assert pool["containerSpec"]["args"][-4:] == ["--data_dir", "gs://test-bucket/imagenet/tfrecords", "--epochs", "45"]
    assert job["jobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": "gs://test-bucket/runs/v1-multi"}


def test_tutorial_dataflow_command_parses(capsys):
    """Every flag of the tutorial's Dataflow command is the job's own or one of Beam's, with the values meant."""
    from apache_beam.options import pipeline_options as po

    from preprocessing import build_tfrecords

    (argv,) = _tutorial_commands("python -m preprocessing.build_tfrecords")
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
