"""cloudbuild.yaml: its substitutions, the image it builds and pushes, and the submit step's own command run as a dry run."""
import ast
import re
import shlex

import pytest

from tests.helpers.cloud_jobs import BUILTINS, REPO, SUBSTITUTION, cloudbuild, dry_run, substitute


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_cloudbuild_substitutions_are_all_defined_and_all_used():
    build = cloudbuild()
    defined = set(build["substitutions"])
    steps = {k: v for k, v in build.items() if k != "substitutions"}
    used = {m.group(1) or m.group(2) for s in _strings(steps) for m in SUBSTITUTION.finditer(s)}
    assert {"_REGION", "_REPOSITORY", "_TAG", "_BUCKET"} <= defined
    assert used - BUILTINS == defined  # Cloud Build also rejects defined-but-unused substitutions
    assert used & BUILTINS == {"PROJECT_ID", "BUILD_ID"}  # the built-ins the image name and output paths need
    assert all(name.startswith("_") for name in defined)
    optional = {"_TENSORBOARD", "_SERVICE_ACCOUNT"}  # empty means "none"
    assert all(value for name, value in build["substitutions"].items() if name not in optional)
    assert all(build["substitutions"][name] == "" for name in optional)


TENSORBOARD = {
    "_TENSORBOARD": "projects/p/locations/us-central1/tensorboards/5",
    "_SERVICE_ACCOUNT": "t@p.iam.gserviceaccount.com",
}


@pytest.mark.parametrize(
    "overrides, pools",
    [({}, [1]), ({"_JOB_FILE": "cloud/vertex_job_multiworker.yaml", "_TAG": "v2", "_BUCKET": "b2", **TENSORBOARD}, [1, 3])],
)
def test_cloudbuild_pushes_the_image_its_job_runs(capsys, overrides, pools):
    build = cloudbuild()
    values = dict(build["substitutions"], PROJECT_ID="test-project", BUILD_ID="b-123")
    values.update(overrides)  # what --substitutions=... does
    steps = {s["id"]: s for s in build["steps"]}
    assert list(steps) == ["check-bucket", "build", "push", "submit"]

    image = values["_REGION"] + "-docker.pkg.dev/test-project/" + values["_REPOSITORY"] + "/alexnet-trainer:" + values["_TAG"]
    build_args = [substitute(a, values) for a in steps["build"]["args"]]
    assert build_args[:3] == ["build", "-t", image] and build_args[-1] == "."
    assert [substitute(a, values) for a in steps["push"]["args"]] == ["push", image]
    assert [substitute(a, values) for a in build["images"]] == [image]
    assert substitute(steps["submit"]["name"], values) == image  # the submitter runs in the image just pushed

    # Run the submit step's own `python -m cloud.vertex` command, as a dry run.
    script = substitute(steps["submit"]["args"][-1], values)
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
    assert tokens[:3] == ["python", "-m", "cloud.vertex"]
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
    check = [substitute(a, values) for a in steps["check-bucket"]["args"]]
    assert "gs://" + values["_BUCKET"] in check
