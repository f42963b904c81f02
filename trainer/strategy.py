"""Building the tf.distribute strategy the job trains under.

`configure_cpu_replicas` must run before TensorFlow initialises its devices
(before the first op), so trainer.run.run calls it first. Cluster descriptions come
in as plain dicts (TF_CONFIG form), read from the environment by trainer.task
only; `tf_config_from_cluster_spec` converts Vertex AI's CLUSTER_SPEC.
"""
import json
import os
import tempfile

import tensorflow as tf

# Vertex AI names its worker pools by position in workerPoolSpecs[]; TF_CONFIG
# names them by role. Pool 0 is the primary replica (TF's "chief").
VERTEX_POOL_ROLES = {"workerpool0": "chief", "workerpool1": "worker", "workerpool2": "ps", "workerpool3": "evaluator"}


class StrategyError(ValueError):
    """A strategy that cannot be built from the given devices or cluster."""


def configure_cpu_replicas(n):
    """Splits the first physical CPU into n logical devices (/cpu:0 .. /cpu:n-1).

    Args:
      n: number of logical CPU devices (1 leaves the CPU alone).

    Raises:
      StrategyError: if TensorFlow has already initialised its devices.
    """
    # Only physical devices are listed here: listing logical ones would initialise
    # the runtime, after which neither this nor multi-worker collectives can be set up.
    if n > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
        except RuntimeError as err:
            raise StrategyError(
                "--cpu_replicas %d must be configured before TensorFlow initialises its devices; "
                "run it in a fresh process (python -m trainer.task). TensorFlow said: %s" % (n, err)
            ) from err


def tf_config_from_cluster_spec(cluster_spec):
    """Converts Vertex AI's CLUSTER_SPEC to the TF_CONFIG form TensorFlow reads.

    CLUSTER_SPEC looks like {"cluster": {"workerpool0": ["host:port"], "workerpool1": [...]},
    "task": {"type": "workerpool1", "index": 0}, "environment": "cloud", "job": {...}}.

    Args:
      cluster_spec: the parsed CLUSTER_SPEC dict.

    Returns:
      {"cluster": {"chief": [...], "worker": [...], ...}, "task": {"type": ..., "index": ...},
       "environment": "cloud"}.
    """
    try:
        cluster = cluster_spec["cluster"]
        task = cluster_spec["task"]
        out_cluster = {}
        for pool, addresses in cluster.items():
            if pool not in VERTEX_POOL_ROLES:
                raise StrategyError(
                    "CLUSTER_SPEC has an unknown worker pool %r. Expected one of %s" % (pool, sorted(VERTEX_POOL_ROLES))
                )
            out_cluster[VERTEX_POOL_ROLES[pool]] = list(addresses)
        task_type = VERTEX_POOL_ROLES[task["type"]]
        index = int(task["index"])
    except (KeyError, TypeError) as err:
        raise StrategyError(
            "expected CLUSTER_SPEC with 'cluster' and 'task' {'type', 'index'}. Received: %r" % (cluster_spec,)
        ) from err
    # TF_CONFIG never lists the evaluator in the training cluster.
    out_cluster.pop("evaluator", None)
    return {
        "cluster": out_cluster,
        "task": {"type": task_type, "index": index},
        "environment": cluster_spec.get("environment", "cloud"),
    }


def parse_tf_config(text):
    """Parses TF_CONFIG JSON text ('' -> None), with the value in the error."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise StrategyError("TF_CONFIG is not valid JSON. Received: %r" % text) from err
    if not isinstance(value, dict) or "cluster" not in value:
        raise StrategyError("expected TF_CONFIG as {'cluster': {...}, 'task': {...}}. Received: %r" % text)
    return value


def _cluster_size(tf_config):
    if not tf_config:
        return 1
    return sum(len(v) for k, v in tf_config["cluster"].items() if k in ("chief", "worker"))


def make_strategy(name, tf_config=None, tpu_address=""):
    """Builds a tf.distribute strategy.

    Args:
      name: one of trainer.config.STRATEGIES. 'auto' picks multi_worker_mirrored when
        tf_config describes more than one worker, mirrored when there is more than one
        GPU (or more than one logical CPU and no GPU), one_device on a single GPU, and
        the default strategy otherwise.
      tf_config: parsed TF_CONFIG dict (or None).
      tpu_address: TPU name or grpc address for 'tpu' ('' = the local / Vertex TPU).

    Returns:
      A tf.distribute.Strategy.
    """
    if name == "auto" and _cluster_size(tf_config) > 1:
        name = "multi_worker_mirrored"
    if name == "multi_worker_mirrored":
        # Built before anything lists logical devices: collectives must be
        # configured before the runtime initialises.
        return _multi_worker(tf_config)
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if name == "auto":
        if len(gpus) > 1 or (not gpus and len(cpus) > 1):
            name = "mirrored"
        elif len(gpus) == 1:
            name = "one_device"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else cpus[0].name)
    if name == "mirrored":
        devices = [d.name for d in (gpus or cpus)]
        # NCCL needs GPUs; on logical CPUs the reduction is a plain sum on one device.
        ops = None if gpus else tf.distribute.ReductionToOneDevice(reduce_to_device=devices[0])
        return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=ops)
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise StrategyError(
        "expected --strategy in auto, default, one_device, mirrored, multi_worker_mirrored, tpu. Received: %r" % (name,)
    )


def check_xla(strategy):
    """Raises StrategyError when `--xla` cannot run under `strategy`.

    XLA fails when one strategy mirrors the variables over several logical CPU
    devices (`--cpu_replicas` > 1): the compiled step of replica 1 reads its
    variables on /cpu:1 from the XLA device of /cpu:0, and TensorFlow stops with
    "Trying to access resource ... located in device CPU:1 from device CPU:0"
    (keras-team/keras#19005; TensorFlow's XLA known issue "tf.Variable on a
    different device"). Only logical CPU devices are refused: on one CPU
    device the XLA step trains (tested). Several GPUs were not tried here;
    keras-team/keras#18145 reports mirrored XLA failing on GPUs too.
    """
    try:
        devices = strategy.extended.worker_devices
    except RuntimeError:  # the default strategy has no device list: one device
        return
    cpus = [d for d in devices if tf.DeviceSpec.from_string(d).device_type == "CPU"]
    if len(cpus) > 1:
        raise StrategyError(
            "--xla cannot run the step mirrored over %d logical CPU devices (--cpu_replicas %d): each replica's "
            "variables live on its own device and XLA reads them from /cpu:0 (keras-team/keras#19005). Drop --xla, "
            "or use --cpu_replicas 1." % (len(cpus), len(cpus))
        )


def _multi_worker(tf_config):
    if not tf_config:
        raise StrategyError(
            "--strategy multi_worker_mirrored needs TF_CONFIG or Vertex AI's CLUSTER_SPEC in the environment. Received neither."
        )
    task = tf_config.get("task", {})
    gpus = tf.config.list_physical_devices("GPU")
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(tf_config["cluster"]),
        task_type=task.get("type"),
        task_id=int(task.get("index", 0)),
        rpc_layer="grpc",
        num_accelerators={"GPU": len(gpus)} if gpus else None,
    )
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)


def task_identity(strategy):
    """(task_type, task_id) of this process; (None, None) outside multi-worker training."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy):
    """True for the one process that writes checkpoints, summaries and exports.

    That is the 'chief' task, or worker 0 when the cluster has no chief, or the
    only process of a single-machine strategy.
    """
    task_type, task_id = task_identity(strategy)
    if task_type is None:
        return True
    has_chief = "chief" in strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


def write_dir(directory, strategy):
    """Where this process writes: `directory` on the chief, a private temp dir elsewhere.

    Every multi-worker process must take part in saving (the save runs
    collectives), but only the chief's files are kept; the others write to their
    own temporary directory, removed at the end (`cleanup_write_dir`). This is
    TensorFlow's documented multi-worker checkpoint pattern; it keeps two workers
    sharing one model_dir from overwriting each other.
    """
    if is_chief(strategy):
        return directory
    task_type, task_id = task_identity(strategy)
    scratch = "alexnet_worker_%s_%d_%d" % (task_type, task_id, os.getpid())
    return os.path.join(tempfile.gettempdir(), scratch, os.path.basename(directory.rstrip("/")))


def cleanup_write_dir(directory, strategy):
    """Removes a non-chief's private write directory (no-op on the chief)."""
    if not is_chief(strategy) and tf.io.gfile.exists(directory):
        tf.io.gfile.rmtree(os.path.dirname(directory))
