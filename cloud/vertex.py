"""Submits `python -m trainer.task` to Vertex AI as a custom job.

Print the exact job that would be created (no network, no credentials):

  python -m cloud.vertex --job_file cloud/vertex_job_mirrored.yaml \
      --image_uri us-central1-docker.pkg.dev/P/alexnet/alexnet-trainer:v1 \
      --base_output_dir gs://B/runs/v1 --dry_run -- --data_dir gs://B/imagenet/tfrecords

Drop `--dry_run` (and add `--project P --region R`) to create it. Everything after
`--` is passed to `python -m trainer.task` unchanged. Vertex AI derives
AIP_MODEL_DIR (<base>/model), AIP_CHECKPOINT_DIR (<base>/checkpoints) and
AIP_TENSORBOARD_LOG_DIR (<base>/logs) from --base_output_dir; the trainer takes its
directories from those variables, so no --model_dir is passed.

A job file (YAML) holds flag values under their flag names plus `trainer_args`, a
list of trainer flags; flags given on the command line override it, and trainer
flags after `--` come after (so override) the file's. The job itself is built by
`cloud.job_spec.build_job_spec`, a pure function; the Vertex AI SDK
(`google-cloud-aiplatform`, the `cloud` extra) and pyyaml are imported only where
they are used, so `--help` and `--dry_run` work where the extra is not installed.
"""
import argparse
import datetime
import difflib
import json
import sys

import cli
from cloud.job_spec import ACCELERATOR_TYPES, MIRRORED, SHAPES, build_job_spec

_PROG = "cloud.vertex"


def to_proto(spec):
    """The SDK's v1 CustomJob proto of a build_job_spec dict (imports the SDK).

    Unknown keys or enum names raise ValueError (json_format.ParseError).
    """
    from google.cloud.aiplatform_v1.types import CustomJob  # the `cloud` extra, see the module docstring

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
    from google.cloud import aiplatform  # the `cloud` extra, see the module docstring

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
    # The `cloud` extra, see the module docstring.
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


def _parser():
    # allow_abbrev=False: a mistyped --dry_ru must be an error, not a silent --dry_run.
    p = cli.Parser(prog="python -m " + _PROG, description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--job_file", default="",
                   help="YAML file of flag values and trainer_args (e.g. cloud/vertex_job_mirrored.yaml)")
    p.add_argument("--display_name", default="", help="job name in the console ('' = alexnet-<strategy>-<UTC time>)")
    p.add_argument("--strategy", default=MIRRORED, choices=SHAPES, help="job shape; also passed to the trainer")
    p.add_argument("--machines", type=int, default=1,
                   help="machines in total (multi_worker_mirrored: chief + machines-1 workers)")
    p.add_argument("--gpus_per_machine", type=int, default=1, help="GPUs on each machine (0 = CPU only)")
    p.add_argument("--machine_type", default="n1-standard-8", help="Compute Engine machine type of every replica")
    p.add_argument("--accelerator_type", default="NVIDIA_TESLA_V100", help="one of: " + ", ".join(ACCELERATOR_TYPES))
    p.add_argument("--image_uri", default="",
                   help="trainer image, e.g. REGION-docker.pkg.dev/PROJECT/REPO/alexnet-trainer:TAG (required)")
    p.add_argument("--base_output_dir", default="",
                   help="gs://bucket/path: Vertex AI sets AIP_MODEL_DIR etc. below it (required)")
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
    import yaml  # the `cloud` extra: the trainer image never reads job files

    try:
        with open(path) as f:
            values = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as err:
        raise ValueError("cannot read --job_file %s: %s" % (path, err)) from err
    if not isinstance(values, dict):
        raise ValueError(
            "expected --job_file %s to hold a YAML mapping of flag names to values. Received: %r" % (path, values)
        )
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
      cli.UsageError: a flag or job-file mistake (the message says which).
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


def _job(args, trainer_args):
    """The job spec of the parsed flags; a shape Vertex AI would reject is a cli.UsageError."""
    display_name = args.display_name or "alexnet-%s-%s" % (
        args.strategy.replace("_", "-"),
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S"),
    )
    try:
        return build_job_spec(
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
        raise cli.UsageError(str(err)) from err


def _first_line(err):
    """The first line of an exception's message (the rest is usually a long hint or a body)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _credentials():
    """Application default credentials and their project (imports google.auth)."""
    import google.auth  # arrives with the `cloud` extra's SDK

    return google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])


def _sdk_errors():
    """The SDK's (auth errors, API errors) modules; cli.UsageError naming the extra when it is absent."""
    # Imported here, before credentials are looked up, so an environment without the
    # `cloud` extra fails with one line rather than halfway through a submission.
    try:
        import google.auth.exceptions
        from google.api_core import exceptions as api_exceptions
        from google.cloud import aiplatform  # noqa: F401  (the SDK itself, not only its dependencies)
    except ImportError as err:
        raise cli.UsageError("submitting needs the Vertex AI SDK: pip install 'alexnet-pipeline[cloud]' (%s)" % err) from err
    return google.auth.exceptions, api_exceptions


def _create(spec, args):
    """Creates the job on Vertex AI and prints its name.

    Returns:
      cli.EXIT_OK, or cli.EXIT_FAILED when Google's side failed (a 5xx).

    Raises:
      cli.UsageError: no SDK, a bad region, no credentials or project, or a
        request Vertex AI refused as the user's to fix (a 4xx).
    """
    auth_errors, api_errors = _sdk_errors()
    region_error = check_region(args.region)
    if region_error:
        raise cli.UsageError(region_error)
    try:
        credentials, default_project = _credentials()
    except auth_errors.DefaultCredentialsError as err:
        raise cli.UsageError(
            "no Google Cloud credentials (run `gcloud auth application-default login`, or use --dry_run): %s"
            % _first_line(err)
        ) from err
    project = args.project or default_project
    if not project:
        raise cli.UsageError("no project: pass --project (the credentials name none)")
    try:
        job = submit(spec, project, args.region, credentials)
    except auth_errors.GoogleAuthError as err:
        raise cli.UsageError("Google Cloud refused the credentials: %s" % _first_line(err)) from err
    except ValueError as err:  # the SDK's own argument checks
        raise cli.UsageError("the Vertex AI SDK refused the job: %s" % _first_line(err)) from err
    except api_errors.GoogleAPICallError as err:
        # 4xx (API not enabled, no permission, bad region or quota) is the user's to fix;
        # a 5xx is Google's, reported the same way but with the exit code of a failed run.
        message = "Vertex AI did not create the job: %s" % _first_line(err)
        if 400 <= (err.code or 0) < 500:
            raise cli.UsageError(message) from err
        print("%s: error: %s" % (_PROG, message), file=sys.stderr)
        return cli.EXIT_FAILED
    hardware = args.accelerator_type if args.gpus_per_machine else "CPU"
    print("%s: created %s (%d machine(s) x %d %s) output %s" % (
        _PROG, job.resource_name, args.machines, args.gpus_per_machine, hardware, args.base_output_dir))
    return cli.EXIT_OK


def main(argv=None):
    """Entry point: builds the job, prints it (--dry_run) or creates it.

    Returns:
      cli.EXIT_OK on success; cli.EXIT_USAGE on a user error (one line on stderr);
      cli.EXIT_FAILED when Vertex AI failed on its side.
    """
    try:
        args, trainer_args = parse(argv)
        spec = _job(args, trainer_args)
        if args.dry_run:
            print(json.dumps(spec, indent=2, sort_keys=True))
            return cli.EXIT_OK
        return _create(spec, args)
    except cli.UsageError as err:
        print("%s: error: %s" % (_PROG, err), file=sys.stderr)
        return cli.EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
