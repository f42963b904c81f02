"""The training job's configuration: one frozen dataclass, filled by trainer.task.

Everything below `trainer.task` takes this object (or plain arguments), never
flags or environment variables. The end-of-line comments give the reason for
each default. `config.json` in the model directory is `to_json(config)`; a
resumed run compares it with the new config (`config_differences`).
"""
import dataclasses
import json
import os
from typing import Optional

# The model's choices, defined where the model is built; the flags and the HParams
# dashboard take them from here with the config's own choices.
from model.alexnet import ACTIVATIONS as ACTIVATIONS
from model.alexnet import INITS as INITS

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
MIXED_PRECISION = ("none", "float16", "bfloat16")
LR_SCHEDULES = ("plateau", "step")
PAPER_BATCH_SIZE = 128  # the batch the paper's learning rate 0.01 belongs to (linear scaling base)
DEMO_STORED_SIZE = 144  # demo images are stored at 144 px and cropped to 127 (the paper's 256 -> 227, scaled)

# Fields that may change between a run and its resumption without changing what
# is being trained: where things go, what to do at the end, debugging aids.
RESUME_FREE_FIELDS = frozenset(
    {
        "model_dir",
        "checkpoint_dir",
        "log_dir",
        "epochs",  # training longer is the usual reason to rerun a finished command
        "eval_only",
        "checkpoint",
        "ten_crop",
        "allow_config_change",
        "profile_steps",
        "checkpoint_every_steps",
        "keep_checkpoints",
        "steps_per_call",
        "log_every_steps",
        "debug_nan_at_step",
        "debug_input_sleep_ms",
        "stall_steps",
        "dump_weights",
        "export",
        "demo",
        "recipe",  # only a name: the values it set are compared one by one
        "demo_train_per_class",
        "demo_val_per_class",
        "skip_corrupt",
        "val_steps",
        "augment_on_host",  # the same draws either way; pixels equal within float rounding (tested)
        "lock_stale_seconds",
    }
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What one run of `python -m trainer.task` does. Defaults are the paper's recipe."""

    data_dir: str = ""  # TFRecord shards + metadata.json (preprocessing.build_tfrecords); required unless --demo
    model_dir: str = "runs/alexnet"  # checkpoints/, best/, logs/, export/, config.json, eval.json
    checkpoint_dir: str = ""  # "" = <model_dir>/checkpoints; Vertex sets AIP_CHECKPOINT_DIR
    log_dir: str = ""  # "" = <model_dir>/logs; Vertex sets AIP_TENSORBOARD_LOG_DIR
    # Distribution.
    strategy: str = "auto"  # mirrored over >1 GPU, multi-worker from TF_CONFIG, else the default strategy
    cpu_replicas: int = 1  # >1 splits the CPU into logical devices so mirrored training runs without GPUs
    tpu: str = ""  # --strategy tpu: TPU name or grpc:// address; "" = the TPU attached to this VM
    # Optimisation (paper Section 5).
    batch_size: int = 128  # global batch, split over replicas (paper: 128)
    epochs: int = 90  # "roughly 90 cycles through the training set"
    steps_per_epoch: int = 0  # 0 = train examples // global batch, so an epoch sees the set once
    val_steps: int = 0  # 0 = every validation batch; >0 caps validation for quick runs
    learning_rate: float = 0.01  # the paper's initial rate for batch 128 (scaled linearly above 128)
    momentum: float = 0.9  # paper
    weight_decay: float = 5e-4  # paper; coupled, applied by trainer.optimizer.PaperSGD (the model is built with 0)
    lr_schedule: str = "plateau"  # paper: divide by 10 when validation error stops improving
    plateau_patience: int = 3  # epochs without a better validation top-1 before dividing; one noisy epoch is no plateau
    lr_step_epochs: int = 30  # step schedule: divide by 10 every 30 epochs (the paper's 3 drops over 90 epochs)
    max_lr_drops: int = 3  # the paper divided "three times prior to termination"
    warmup_epochs: float = 0.0  # linear warm-up; task.py sets 5 when batch > 128 (Goyal et al. 2017)
    scale_lr: bool = True  # lr * batch / 128 when batch > 128, which keeps the per-example step size
    # Model switches (model.build_alexnet); the ablation experiments flip these.
    image_size: int = 227  # paper's crop (its "224" does not fit its own conv1 arithmetic)
    num_classes: int = 0  # 0 = from metadata.json; set it for shards without metadata
    label_offset: int = -1  # -1 = from metadata.json (0 ours, 1 for TF's 1001-class ImageNet shards)
    init: str = "paper"  # N(0, 0.01) weights, biases 1 in conv2/4/5/fc6/fc7; 'he' trains small sets faster
    two_tower: bool = False  # the paper's two-GPU connectivity is optional and slower on CPU (docs/decisions/trainer-cpu.md)
    activation: str = "relu"  # paper; 'tanh' for the Figure 1 comparison
    lrn: bool = True  # paper
    overlapping_pool: bool = True  # paper: 3x3 windows, stride 2
    dropout_rate: float = 0.5  # paper
    pca_noise: bool = True  # paper's colour augmentation
    skip_corrupt: bool = False  # fail on an undecodable record unless asked to skip (and count) it
    # Flips, PCA noise and the mean run fused at the start of the train step, on
    # the accelerator, on the uint8 crops tf.data decodes; True runs them in tf.data.
    augment_on_host: bool = False
    # Speed.
    mixed_precision: str = "none"  # 'bfloat16' on TPU / recent CPUs, 'float16' with loss scaling on GPUs
    xla: bool = False  # jit_compile the step; faster on GPU/TPU, not always on CPU
    steps_per_call: int = 1  # train steps per tf.function call; >1 cuts Python overhead on fast devices
    # Checkpoints and logging.
    checkpoint_every_steps: int = 500  # bounds the work a preemption loses to 500 steps
    keep_checkpoints: int = 3  # last K step checkpoints; the best one is kept apart in best/
    allow_config_change: bool = False  # a resumed run with a different config is refused unless asked
    log_every_steps: int = 50  # plain log line / TensorBoard train scalar interval when not on a terminal
    # Warn once if the training loss still sits at ln(classes) from this step on (trainer.progress.StallCheck);
    # 0 = never.
    stall_steps: int = 1000
    profile_steps: str = ""  # "first,last" global steps to trace with the TensorBoard profiler, e.g. "10,15"
    # What to do.
    eval_only: bool = False  # evaluate a checkpoint (centre crop and 10 views) and write eval.json
    checkpoint: str = ""  # --eval_only: this checkpoint prefix instead of the latest
    # The end-of-training evaluation also averages the paper's 10 views (ten forward passes an image); --eval_only always does.
    ten_crop: bool = False
    export: bool = True  # write export/alexnet.keras and export/saved_model at the end
    recipe: str = ""  # the trainer.recipes preset the defaults came from ('' = the paper's); recorded in config.json
    demo: bool = False  # build the synthetic 10-class set if needed and train the demo recipe
    demo_train_per_class: int = 0  # 0 = the demo builder's default; tests make it small
    demo_val_per_class: int = 0  # 0 = the demo builder's default
    seed: int = 0  # initialisation and augmentation seed
    # TensorFlow's op determinism and a fixed tf.data order: the same seed, data, strategy and
    # machine give identical weights. Off by default: it costs speed (docs/results/deterministic.md).
    deterministic: bool = False
    # The writer lock of the model directory is refreshed 5 times within this interval; another
    # run takes over a lock not refreshed for the holder's interval (a lost machine). Tests shorten it.
    lock_stale_seconds: float = 300.0
    # Test aids (documented in README, not part of the recipe).
    debug_nan_at_step: int = -1  # makes the loss NaN at this global step to exercise the NaN stop
    dump_weights: str = ""  # write the final weights of THIS worker to an .npz (multi-worker tests compare them)
    debug_input_sleep_ms: int = 0  # sleeps this long before each training batch: an input-bound run on purpose

    # os.path.join keeps gs:// URLs whole: they use '/' like POSIX paths.
    @property
    def resolved_checkpoint_dir(self):
        return self.checkpoint_dir or os.path.join(self.model_dir, "checkpoints")

    @property
    def resolved_log_dir(self):
        return self.log_dir or os.path.join(self.model_dir, "logs")


def to_json(config):
    """The config as pretty JSON text (what config.json holds)."""
    return json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True) + "\n"


def from_dict(values):
    """A TrainConfig from a dict such as json.loads(config.json); unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError("unknown config fields %s. Expected a subset of: %s" % (unknown, sorted(names)))
    return TrainConfig(**values)


def config_differences(saved, new):
    """Fields that differ between a saved config dict and a new config and matter for resuming.

    Args:
      saved: dict read from config.json of an earlier run.
      new: the TrainConfig of this run.

    Returns:
      A sorted list of (field, saved value, new value) for fields outside
      RESUME_FREE_FIELDS whose values differ.
    """
    new_values = dataclasses.asdict(new)
    # A field the saved config lacks came after that run was started: it ran with the
    # field's default (e.g. `deterministic` off), so only another value is a change.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    out = []
    for name in sorted(set(saved) | set(new_values)):
        if name in RESUME_FREE_FIELDS:
            continue
        before = saved.get(name, defaults.get(name))
        if before != new_values.get(name):
            out.append((name, before, new_values.get(name)))
    return out


def effective_learning_rate(config: TrainConfig) -> float:
    """The peak learning rate: linearly scaled when the global batch exceeds the paper's 128."""
    if config.scale_lr and config.batch_size > PAPER_BATCH_SIZE:
        return config.learning_rate * config.batch_size / PAPER_BATCH_SIZE
    return config.learning_rate


def parse_profile_steps(text: str) -> Optional[tuple]:
    """'10,15' -> (10, 15); '' -> None. Raises ValueError with the value on bad text."""
    if not text:
        return None
    parts = text.split(",")
    try:
        first, last = (int(p) for p in parts)
    except ValueError as err:
        raise ValueError("expected --profile_steps as 'first,last' global steps, e.g. '10,15'. Received: %r" % text) from err
    if first < 1 or last < first:
        raise ValueError("expected --profile_steps 'first,last' with 1 <= first <= last. Received: %r" % text)
    return first, last
