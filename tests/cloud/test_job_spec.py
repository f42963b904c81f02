"""cloud.job_spec: the CustomJob dict of each shape, and the SDK's names it uses."""
import re

import pytest

from cloud import job_spec

def test_build_job_spec_cpu_only_with_tensorboard():
    spec = job_spec.build_job_spec(
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
    assert set(job_spec.ACCELERATOR_TYPES) <= members, sorted(set(job_spec.ACCELERATOR_TYPES) - members)


_VALID = dict(display_name="j", image_uri="img:1", base_output_dir="gs://b/out", strategy="mirrored", machines=1,
              gpus_per_machine=1, machine_type="n1-standard-8", accelerator_type="NVIDIA_TESLA_V100")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"display_name": ""}, "expected a non-empty display name"),
        ({"image_uri": "img with spaces"}, "expected --image_uri as a container image reference"),
        ({"base_output_dir": "gs://"}, "expected --base_output_dir as gs://bucket/path"),
        ({"machines": 0}, "expected --machines >= 1"),
        ({"gpus_per_machine": -1}, "expected --gpus_per_machine >= 0"),
        ({"machine_type": ""}, "expected --machine_type"),
        ({"trainer_args": ["--model_dir=gs://b/m"]}, "would override AIP_MODEL_DIR"),
        ({"service_account": "someone@example.com"}, "expected --service_account as NAME@PROJECT.iam.gserviceaccount.com"),
    ],
)
def test_build_job_spec_rejects_what_vertex_ai_or_the_trainer_would(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        job_spec.build_job_spec(**dict(_VALID, **change))
    assert job_spec.build_job_spec(**_VALID)["jobSpec"]["workerPoolSpecs"][0]["replicaCount"] == 1
