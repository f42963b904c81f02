"""`python -m trainer.task` and what it is built from: config, tf.data input and
augmentation, strategies, the training loop, evaluation, export, TensorBoard.

Importing this package turns on TensorFlow's oneDNN CPU kernels unless the
environment already chose (`TF_ENABLE_ONEDNN_OPTS=0` keeps them off). TensorFlow's
x86 builds turn them on by themselves only on CPUs with neural-network
instructions (VNNI, AVX-512 BF16, AMX). On an AVX2-only CPU (an AMD EPYC of
this project's 2-core machines) its default leaves them off, and the AlexNet
training step runs slower without them (BENCHMARKS.md, "Keras, oneDNN off";
the measurements behind this default: docs/decisions/trainer-cpu.md). TensorFlow reads the
variable once, when it starts, so it must be set before `import tensorflow`:
this file imports nothing else, and `experiments` and `benchmarks` import it
first. The entry points of this package and of those two are covered. In a
program that imported TensorFlow before `trainer` the default would come too
late for it and would only reach its child processes, so it is not set there.
"""
import os
import sys

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
# What the environment said before the default below: None when it was unset.
ONEDNN_FROM_ENVIRONMENT = os.environ.get(ONEDNN_VARIABLE)
if "tensorflow" not in sys.modules:
    os.environ.setdefault(ONEDNN_VARIABLE, "1")
