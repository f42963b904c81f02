"""The Vertex AI `CustomJob` of one training run, built and checked offline.

Two shapes, matching the trainer's strategies:

  mirrored               1 machine x N GPUs (one worker pool, one replica)
  multi_worker_mirrored  M machines x N GPUs (pool 0 = chief, 1 replica;
                         pool 1 = workers, M-1 replicas)

`build_job_spec` is a pure function: it imports no SDK and touches no network, so a
dry run and the tests see exactly the job a submission would send.
"""
import json
import re

MIRRORED = "mirrored"
MULTI_WORKER_MIRRORED = "multi_worker_mirrored"
SHAPES = (MIRRORED, MULTI_WORKER_MIRRORED)

# GPU names of the v1 AcceleratorType enum (google.cloud.aiplatform_v1.types.AcceleratorType);
# tests check every one is a member of the installed SDK's enum, so this list cannot drift
# into names the API rejects. TPUs are left out: these shapes are GPU strategies.
ACCELERATOR_TYPES = (
    "NVIDIA_TESLA_T4",
    "NVIDIA_TESLA_P4",
    "NVIDIA_TESLA_P100",
    "NVIDIA_TESLA_V100",
    "NVIDIA_L4",
    "NVIDIA_TESLA_A100",
    "NVIDIA_A100_80GB",
    "NVIDIA_H100_80GB",
    "NVIDIA_H100_MEGA_80GB",
    "NVIDIA_H200_141GB",
    "NVIDIA_B200",
)

# A2/A3/A4 machine types come with a fixed number of GPUs, written in the name
# (a2-highgpu-4g has 4 A100s); any other count is rejected by Vertex AI at creation.
_FIXED_GPU_MACHINE = re.compile(r"^a[2-9]-[a-z]+-(\d+)g$")
_TENSORBOARD_NAME = re.compile(r"^projects/[^/]+/locations/[^/]+/tensorboards/[^/]+$")
_SERVICE_ACCOUNT = re.compile(r"^[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com$")


def build_job_spec(
    *,
    display_name,
    image_uri,
    base_output_dir,
    strategy,
    machines,
    gpus_per_machine,
    machine_type,
    accelerator_type,
    trainer_args=(),
    tensorboard="",
    service_account="",
    restart_on_worker_failure=True,
):
    """Builds the Vertex AI v1 `CustomJob` resource for one training run.

    The dict is the REST/JSON form of google.cloud.aiplatform.v1.CustomJob
    (camelCase keys), so it is also what `gcloud ai custom-jobs create` and the
    REST API take; `cloud.vertex.submit` parses it into the SDK's proto unchanged.

    Args:
      display_name: the job's name in the console.
      image_uri: the trainer container (its entry point is `python -m trainer.task`).
      base_output_dir: gs:// prefix; Vertex AI sets AIP_MODEL_DIR, AIP_CHECKPOINT_DIR
        and AIP_TENSORBOARD_LOG_DIR below it.
      strategy: 'mirrored' (1 machine) or 'multi_worker_mirrored' (>= 2 machines).
      machines: number of machines (replicas over all pools).
      gpus_per_machine: GPUs on each machine (0 = CPU only).
      machine_type: Compute Engine machine type, e.g. 'n1-standard-32'.
      accelerator_type: one of ACCELERATOR_TYPES (ignored when gpus_per_machine is 0).
      trainer_args: flags for `python -m trainer.task`; `--strategy` is added here.
      tensorboard: optional Vertex AI TensorBoard resource name
        (projects/P/locations/R/tensorboards/ID); needs service_account.
      service_account: the account the job runs as ('' = Vertex AI's default).
      restart_on_worker_failure: restart the whole job when a worker restarts, so
        multi-worker training (which cannot lose a member) resumes from its checkpoint.

    Returns:
      A dict {"displayName": ..., "jobSpec": {"workerPoolSpecs": [...],
      "baseOutputDirectory": {"outputUriPrefix": ...}, "scheduling": {...}, ...}}.

    Raises:
      ValueError: with the offending values, for any combination Vertex AI or the
        trainer would reject.
    """
    _check_destination(display_name, image_uri, base_output_dir)
    _check_shape(strategy, machines, gpus_per_machine, machine_type, accelerator_type)
    _check_trainer_args(trainer_args)
    _check_identity(tensorboard, service_account)

    machine_spec = {"machineType": machine_type}
    if gpus_per_machine:
        machine_spec["acceleratorType"] = accelerator_type
        machine_spec["acceleratorCount"] = gpus_per_machine
    container = {"imageUri": image_uri, "args": ["--strategy=%s" % strategy] + list(trainer_args)}
    job_spec = {
        "workerPoolSpecs": _worker_pools(strategy, machines, machine_spec, container),
        "baseOutputDirectory": {"outputUriPrefix": base_output_dir},
    }
    if restart_on_worker_failure:
        job_spec["scheduling"] = {"restartJobOnWorkerRestart": True}
    if service_account:
        job_spec["serviceAccount"] = service_account
    if tensorboard:
        job_spec["tensorboard"] = tensorboard
    return {"displayName": display_name, "jobSpec": job_spec}


def _worker_pools(strategy, machines, machine_spec, container):
    """Pool 0 is the chief (Vertex AI's primary replica: TF_CONFIG task type "chief");
    pool 1, for multi_worker_mirrored, holds the other workers."""

    def pool(replicas):
        # Each pool gets its own copies: the proto parser and callers may mutate them.
        return {"machineSpec": dict(machine_spec), "replicaCount": replicas, "containerSpec": json.loads(json.dumps(container))}

    pools = [pool(1)]
    if strategy == MULTI_WORKER_MIRRORED:
        pools.append(pool(machines - 1))
    return pools


def _check_destination(display_name, image_uri, base_output_dir):
    """The job's name, the image it runs and where its outputs go."""
    if not display_name:
        raise ValueError("expected a non-empty display name. Received: %r" % (display_name,))
    if not image_uri or any(c.isspace() for c in image_uri):
        raise ValueError("expected --image_uri as a container image reference. Received: %r" % (image_uri,))
    if not base_output_dir.startswith("gs://") or len(base_output_dir.rstrip("/")) <= len("gs://"):
        raise ValueError(
            "expected --base_output_dir as gs://bucket/path (Vertex AI writes only to Cloud Storage). Received: %r"
            % (base_output_dir,)
        )


def _check_shape(strategy, machines, gpus_per_machine, machine_type, accelerator_type):
    """The machines: a strategy's machine count, and GPUs Vertex AI can attach."""
    if strategy not in SHAPES:
        raise ValueError("expected --strategy in %s. Received: %r" % (", ".join(SHAPES), strategy))
    if not isinstance(machines, int) or machines < 1:
        raise ValueError("expected --machines >= 1. Received: %r" % (machines,))
    if strategy == MIRRORED and machines != 1:
        raise ValueError(
            "--strategy mirrored trains on one machine. Received: --machines %d (use --strategy multi_worker_mirrored)"
            % machines
        )
    if strategy == MULTI_WORKER_MIRRORED and machines < 2:
        raise ValueError(
            "--strategy multi_worker_mirrored needs --machines >= 2. Received: --machines %d (use --strategy mirrored)"
            % machines
        )
    if not isinstance(gpus_per_machine, int) or gpus_per_machine < 0:
        raise ValueError("expected --gpus_per_machine >= 0. Received: %r" % (gpus_per_machine,))
    if not machine_type:
        raise ValueError("expected --machine_type, e.g. n1-standard-32. Received: %r" % (machine_type,))
    fixed = _FIXED_GPU_MACHINE.match(machine_type)
    if fixed and int(fixed.group(1)) != gpus_per_machine:
        raise ValueError(
            "machine type %s comes with %s GPUs. Received: --gpus_per_machine %d"
            % (machine_type, fixed.group(1), gpus_per_machine)
        )
    if gpus_per_machine and accelerator_type not in ACCELERATOR_TYPES:
        raise ValueError(
            "expected --accelerator_type in %s. Received: %r" % (", ".join(ACCELERATOR_TYPES), accelerator_type)
        )


def _check_trainer_args(trainer_args):
    """The trainer's flags may not contradict the job: its strategy and output directories are the job's."""
    for arg in trainer_args:
        if arg == "--strategy" or arg.startswith("--strategy="):
            raise ValueError(
                "give the strategy to cloud.vertex (--strategy), not to the trainer after '--'. Received trainer argument: %r"
                % arg
            )
        if arg == "--model_dir" or arg.startswith("--model_dir="):
            # The trainer would write there instead of AIP_MODEL_DIR: outputs would
            # leave base_output_dir and the Vertex TensorBoard would see no logs.
            raise ValueError(
                "--model_dir would override AIP_MODEL_DIR set from --base_output_dir; drop it. Received trainer argument: %r"
                % arg
            )


def _check_identity(tensorboard, service_account):
    """The TensorBoard to stream to and the account the job runs as."""
    if tensorboard and not _TENSORBOARD_NAME.match(tensorboard):
        raise ValueError("expected --tensorboard as projects/P/locations/R/tensorboards/ID. Received: %r" % (tensorboard,))
    if tensorboard and not service_account:
        raise ValueError(
            "Vertex AI uploads to a TensorBoard only for jobs with a --service_account. "
            "Received: --tensorboard %s and no --service_account" % tensorboard
        )
    if service_account and not _SERVICE_ACCOUNT.match(service_account):
        raise ValueError(
            "expected --service_account as NAME@PROJECT.iam.gserviceaccount.com. Received: %r" % (service_account,)
        )
