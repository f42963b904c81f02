"""Submits `python -m trainer.task` to Vertex AI as a custom job.

Two shapes, matching the trainer's strategies:

  mirrored               1 machine x N GPUs (one worker pool, one replica)
  multi_worker_mirrored  M machines x N GPUs (pool 0 = chief, 1 replica;
                         pool 1 = workers, M-1 replicas)

Print the exact job that would be created (no network, no credentials):

  python -m trainer.vertex --job_file cloud/vertex_job_mirrored.yaml \
      --image_uri us-central1-docker.pkg.dev/P/alexnet/alexnet-trainer:v1 \
      --base_output_dir gs://B/runs/v1 --dry_run -- --data_dir gs://B/imagenet/tfrecords

Drop `--dry_run` (and add `--project P --region R`) to create it. Everything after
`--` is passed to `python -m trainer.task` unchanged. Vertex AI derives
AIP_MODEL_DIR (<base>/model), AIP_CHECKPOINT_DIR (<base>/checkpoints) and
AIP_TENSORBOARD_LOG_DIR (<base>/logs) from --base_output_dir; the trainer takes its
directories from those variables, so no --model_dir is passed.

A job file (YAML) holds flag values under their flag names plus `trainer_args`, a
list of trainer flags; flags given on the command line override it, and trainer
flags after `--` come after (so override) the file's. The job spec is built by
`build_job_spec`, a pure function; the Vertex AI SDK (`google-cloud-aiplatform`,
the `cloud` extra) is imported only to submit.
"""
import argparse
import datetime
import json
import re
import sys

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

USER_ERROR = 2


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
    REST API take; `submit` parses it into the SDK's proto unchanged.

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
    if not display_name:
        raise ValueError("expected a non-empty display name. Received: %r" % (display_name,))
    if not image_uri or any(c.isspace() for c in image_uri):
        raise ValueError("expected --image_uri as a container image reference. Received: %r" % (image_uri,))
    if not base_output_dir.startswith("gs://") or len(base_output_dir.rstrip("/")) <= len("gs://"):
        raise ValueError("expected --base_output_dir as gs://bucket/path (Vertex AI writes only to Cloud Storage). Received: %r" % (base_output_dir,))
    if strategy not in SHAPES:
        raise ValueError("expected --strategy in %s. Received: %r" % (", ".join(SHAPES), strategy))
    if not isinstance(machines, int) or machines < 1:
        raise ValueError("expected --machines >= 1. Received: %r" % (machines,))
    if strategy == MIRRORED and machines != 1:
        raise ValueError("--strategy mirrored trains on one machine. Received: --machines %d (use --strategy multi_worker_mirrored)" % machines)
    if strategy == MULTI_WORKER_MIRRORED and machines < 2:
        raise ValueError("--strategy multi_worker_mirrored needs --machines >= 2. Received: --machines %d (use --strategy mirrored)" % machines)
    if not isinstance(gpus_per_machine, int) or gpus_per_machine < 0:
        raise ValueError("expected --gpus_per_machine >= 0. Received: %r" % (gpus_per_machine,))
    if not machine_type:
        raise ValueError("expected --machine_type, e.g. n1-standard-32. Received: %r" % (machine_type,))
    fixed = _FIXED_GPU_MACHINE.match(machine_type)
    if fixed and int(fixed.group(1)) != gpus_per_machine:
        raise ValueError(
            "machine type %s comes with %s GPUs. Received: --gpus_per_machine %d" % (machine_type, fixed.group(1), gpus_per_machine)
        )
    if gpus_per_machine and accelerator_type not in ACCELERATOR_TYPES:
        raise ValueError("expected --accelerator_type in %s. Received: %r" % (", ".join(ACCELERATOR_TYPES), accelerator_type))
    for arg in trainer_args:
        if arg == "--strategy" or arg.startswith("--strategy="):
            raise ValueError("give the strategy to trainer.vertex (--strategy), not to the trainer after '--'. Received trainer argument: %r" % arg)
        if arg == "--model_dir" or arg.startswith("--model_dir="):
            # The trainer would write there instead of AIP_MODEL_DIR: outputs would
            # leave base_output_dir and the Vertex TensorBoard would see no logs.
            raise ValueError("--model_dir would override AIP_MODEL_DIR set from --base_output_dir; drop it. Received trainer argument: %r" % arg)
    if tensorboard and not _TENSORBOARD_NAME.match(tensorboard):
        raise ValueError("expected --tensorboard as projects/P/locations/R/tensorboards/ID. Received: %r" % (tensorboard,))
    if tensorboard and not service_account:
        raise ValueError("Vertex AI uploads to a TensorBoard only for jobs with a --service_account. Received: --tensorboard %s and no --service_account" % tensorboard)
    if service_account and not _SERVICE_ACCOUNT.match(service_account):
        raise ValueError("expected --service_account as NAME@PROJECT.iam.gserviceaccount.com. Received: %r" % (service_account,))

    machine_spec = {"machineType": machine_type}
    if gpus_per_machine:
        machine_spec["acceleratorType"] = accelerator_type
        machine_spec["acceleratorCount"] = gpus_per_machine
    container = {"imageUri": image_uri, "args": ["--strategy=%s" % strategy] + list(trainer_args)}

    def pool(replicas):
        # Each pool gets its own copies: the proto parser and callers may mutate them.
        return {"machineSpec": dict(machine_spec), "replicaCount": replicas, "containerSpec": json.loads(json.dumps(container))}

    # Pool 0 is the chief (Vertex AI's primary replica: TF_CONFIG task type "chief");
    # pool 1 holds the other workers.
    pools = [pool(1)]
    if strategy == MULTI_WORKER_MIRRORED:
        pools.append(pool(machines - 1))

    job_spec = {
        "workerPoolSpecs": pools,
        "baseOutputDirectory": {"outputUriPrefix": base_output_dir},
    }
    if restart_on_worker_failure:
        job_spec["scheduling"] = {"restartJobOnWorkerRestart": True}
    if service_account:
        job_spec["serviceAccount"] = service_account
    if tensorboard:
        job_spec["tensorboard"] = tensorboard
    return {"displayName": display_name, "jobSpec": job_spec}


def to_proto(spec):
    """The SDK's v1 CustomJob proto of a build_job_spec dict (imports the SDK).

    Unknown keys or enum names raise ValueError (json_format.ParseError).
    """
    from google.cloud.aiplatform_v1.types import CustomJob

    return CustomJob.from_json(json.dumps(spec))


def submit(spec, project, region, credentials):
    """Creates the custom job on Vertex AI and returns its SDK object.

    The SDK's CustomJob is constructed from the same worker pools and output
    directory, and `submit` is given the same scheduling, TensorBoard and service
    account, so the request equals `to_proto(spec)` (a test checks this).

    Args:
      spec: a build_job_spec dict.
      project, region: where the job runs.
      credentials: google.auth credentials.

    Returns:
      The submitted google.cloud.aiplatform.CustomJob (not waited for).
    """
    from google.cloud import aiplatform

    proto = to_proto(spec)
    job_spec = proto.job_spec
    base_output_dir = job_spec.base_output_directory.output_uri_prefix
    bucket = "gs://" + base_output_dir[len("gs://") :].split("/", 1)[0]
    job = aiplatform.CustomJob(
        display_name=proto.display_name,
        worker_pool_specs=list(job_spec.worker_pool_specs),
        base_output_dir=base_output_dir,
        project=project,
        location=region,
        credentials=credentials,
        staging_bucket=bucket,  # required by the SDK; nothing is staged for a container job
    )
    job.submit(
        restart_job_on_worker_restart=job_spec.scheduling.restart_job_on_worker_restart,
        tensorboard=job_spec.tensorboard or None,
        service_account=job_spec.service_account or None,
    )
    return job


def check_region(region):
    """None if the Vertex AI SDK accepts `region`, else a one-line message (checked offline)."""
    import difflib

    from google.cloud.aiplatform import utils
    from google.cloud.aiplatform.constants import base as constants

    try:
        utils.validate_region(region)
        return None
    except ValueError:
        pass
    close = difflib.get_close_matches(str(region).lower(), sorted(constants.SUPPORTED_REGIONS), n=3)
    return "--region %r is not a Vertex AI region%s" % (
        region,
        " (did you mean %s?)" % " or ".join(close) if close else " (e.g. us-central1, europe-west4)",
    )


class UsageError(Exception):
    """A mistake in the flags or the job file: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting."""

    def error(self, message):
        raise UsageError(message)


def _parser():
    # allow_abbrev=False: a mistyped --dry_ru must be an error, not a silent --dry_run.
    p = _Parser(prog="python -m trainer.vertex", description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--job_file", default="", help="YAML file of flag values and trainer_args (e.g. cloud/vertex_job_mirrored.yaml)")
    p.add_argument("--display_name", default="", help="job name in the console ('' = alexnet-<strategy>-<UTC time>)")
    p.add_argument("--strategy", default=MIRRORED, choices=SHAPES, help="job shape; also passed to the trainer")
    p.add_argument("--machines", type=int, default=1, help="machines in total (multi_worker_mirrored: chief + machines-1 workers)")
    p.add_argument("--gpus_per_machine", type=int, default=1, help="GPUs on each machine (0 = CPU only)")
    p.add_argument("--machine_type", default="n1-standard-8", help="Compute Engine machine type of every replica")
    p.add_argument("--accelerator_type", default="NVIDIA_TESLA_V100", help="one of: " + ", ".join(ACCELERATOR_TYPES))
    p.add_argument("--image_uri", default="", help="trainer image, e.g. REGION-docker.pkg.dev/PROJECT/REPO/alexnet-trainer:TAG (required)")
    p.add_argument("--base_output_dir", default="", help="gs://bucket/path: Vertex AI sets AIP_MODEL_DIR etc. below it (required)")
    p.add_argument("--tensorboard", default="", help="Vertex AI TensorBoard resource projects/P/locations/R/tensorboards/ID")
    p.add_argument("--service_account", default="", help="account the job runs as (required with --tensorboard)")
    p.add_argument(
        "--restart_on_worker_failure",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="restart the whole job when a worker restarts; the trainer resumes from its checkpoint",
    )
    p.add_argument("--project", default="", help="Google Cloud project ('' = the credentials' project)")
    p.add_argument("--region", default="us-central1", help="Vertex AI region")
    p.add_argument("--dry_run", action="store_true", help="print the job as JSON and exit; no network, no credentials")
    return p


_FILE_ONLY_KEYS = ("trainer_args",)
_NOT_IN_FILE = ("job_file", "dry_run")


def read_job_file(path, parser):
    """Reads a job file into (flag argv, trainer argv).

    Args:
      path: YAML file with a mapping of flag names (without '--') to values, and
        optionally `trainer_args`, a list of strings.
      parser: the submitter's parser, whose flag names are the allowed keys.

    Returns:
      (argv, trainer_args): argv of `--name=value` tokens to place before the
      command line's (later flags win), and the list of trainer flags.

    Raises:
      ValueError: unreadable file, unknown key, or a value of the wrong kind.
    """
    import yaml  # only here: the trainer container never reads job files

    try:
        with open(path) as f:
            values = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as err:
        raise ValueError("cannot read --job_file %s: %s" % (path, err)) from err
    if not isinstance(values, dict):
        raise ValueError("expected --job_file %s to hold a YAML mapping of flag names to values. Received: %r" % (path, values))
    flags = {a.dest: a for a in parser._actions if a.dest != "help"}
    allowed = sorted(set(flags) - set(_NOT_IN_FILE)) + list(_FILE_ONLY_KEYS)
    argv, trainer_args = [], []
    for key, value in values.items():
        if key == "trainer_args":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("expected trainer_args in %s as a list of strings. Received: %r" % (path, value))
            trainer_args = list(value)
        elif key not in allowed:
            raise ValueError("unknown key %r in --job_file %s. Expected some of: %s" % (key, path, ", ".join(allowed)))
        elif isinstance(flags[key], argparse.BooleanOptionalAction):
            if not isinstance(value, bool):
                raise ValueError("expected %s: true or false in %s. Received: %r" % (key, path, value))
            argv.append("--%s" % key if value else "--no-%s" % key)
        elif isinstance(value, (dict, list, bool)) or value is None:
            raise ValueError("expected %s in %s as a single string or number. Received: %r" % (key, path, value))
        else:
            argv.append("--%s=%s" % (key, value))
    return argv, trainer_args


def parse(argv):
    """Parses the submitter's argv (job file merged in) into (namespace, trainer_args).

    Raises:
      UsageError: a flag or job-file mistake (the message says which).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        cut = argv.index("--")
        own, trainer_args = argv[:cut], argv[cut + 1 :]
    else:
        own, trainer_args = argv, []
    parser = _parser()
    first = parser.parse_args(own)
    if first.job_file:
        try:
            file_argv, file_trainer_args = read_job_file(first.job_file, parser)
        except ValueError as err:
            parser.error(str(err))
        # The file comes first, so a flag given on the command line wins; its
        # trainer args come first too, and the trainer's argparse keeps the last value.
        args = parser.parse_args(file_argv + own)
        trainer_args = file_trainer_args + trainer_args
    else:
        args = first
    for name in ("image_uri", "base_output_dir"):
        if not getattr(args, name):
            parser.error("--%s is required (on the command line or in --job_file)" % name)
    return args, trainer_args


def _first_line(err):
    """The first line of an exception's message (the rest is usually a long hint or a body)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _credentials():
    """Application default credentials and their project (imports google.auth)."""
    import google.auth

    return google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])


def main(argv=None):
    """Entry point: builds the job, prints it (--dry_run) or creates it.

    Returns:
      0 on success; 2 on a user error (one line on stderr).
    """
    try:
        args, trainer_args = parse(argv)
    except UsageError as err:
        print("trainer.vertex: error: %s" % err, file=sys.stderr)
        return USER_ERROR
    display_name = args.display_name or "alexnet-%s-%s" % (
        args.strategy.replace("_", "-"),
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S"),
    )
    try:
        spec = build_job_spec(
            display_name=display_name,
            image_uri=args.image_uri,
            base_output_dir=args.base_output_dir,
            strategy=args.strategy,
            machines=args.machines,
            gpus_per_machine=args.gpus_per_machine,
            machine_type=args.machine_type,
            accelerator_type=args.accelerator_type,
            trainer_args=trainer_args,
            tensorboard=args.tensorboard,
            service_account=args.service_account,
            restart_on_worker_failure=args.restart_on_worker_failure,
        )
    except ValueError as err:
        print("trainer.vertex: error: %s" % err, file=sys.stderr)
        return USER_ERROR
    if args.dry_run:
        print(json.dumps(spec, indent=2, sort_keys=True))
        return 0

    try:
        import google.auth.exceptions
        from google.cloud import aiplatform  # noqa: F401  (fail here, before credentials, if absent)
    except ImportError as err:
        print(
            "trainer.vertex: error: submitting needs the Vertex AI SDK: pip install 'alexnet-pipeline[cloud]' (%s)" % err,
            file=sys.stderr,
        )
        return USER_ERROR
    region_error = check_region(args.region)
    if region_error:
        print("trainer.vertex: error: %s" % region_error, file=sys.stderr)
        return USER_ERROR
    try:
        credentials, default_project = _credentials()
    except google.auth.exceptions.DefaultCredentialsError as err:
        print(
            "trainer.vertex: error: no Google Cloud credentials (run `gcloud auth application-default login`, "
            "or use --dry_run): %s" % _first_line(err),
            file=sys.stderr,
        )
        return USER_ERROR
    project = args.project or default_project
    if not project:
        print("trainer.vertex: error: no project: pass --project (the credentials name none)", file=sys.stderr)
        return USER_ERROR
    from google.api_core import exceptions as api_exceptions

    try:
        job = submit(spec, project, args.region, credentials)
    except google.auth.exceptions.GoogleAuthError as err:
        print("trainer.vertex: error: Google Cloud refused the credentials: %s" % _first_line(err), file=sys.stderr)
        return USER_ERROR
    except ValueError as err:  # the SDK's own argument checks
        print("trainer.vertex: error: the Vertex AI SDK refused the job: %s" % _first_line(err), file=sys.stderr)
        return USER_ERROR
    except api_exceptions.GoogleAPICallError as err:
        # 4xx (API not enabled, no permission, bad region or quota) is the user's to fix;
        # a 5xx is Google's, reported the same way but with exit code 1.
        print("trainer.vertex: error: Vertex AI did not create the job: %s" % _first_line(err), file=sys.stderr)
        return USER_ERROR if 400 <= (err.code or 0) < 500 else 1
    print("trainer.vertex: created %s (%d machine(s) x %d %s) output %s" % (
        job.resource_name, args.machines, args.gpus_per_machine, args.accelerator_type if args.gpus_per_machine else "CPU", args.base_output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
