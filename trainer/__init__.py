"""`python -m trainer.task` and what it is built from: config, tf.data input and
augmentation, strategies, the training loop, evaluation, export, TensorBoard.

Importing this package turns on TensorFlow's oneDNN CPU kernels unless the
environment already chose (`TF_ENABLE_ONEDNN_OPTS=0` keeps them off). TensorFlow's
x86 builds turn them on by themselves only on CPUs with neural-network
instructions (AVX-512 VNNI or BF16, AMX). On an AVX2-only CPU (an AMD EPYC of
this project's 2-core machines) its default leaves them off, and the AlexNet
training step at batch 32 runs 1.5x slower: 9.2 against 13.7 images/s, and
TensorFlow's float32 matmul reaches 68 against 154 GFLOP/s. TensorFlow reads the
variable once, when it starts, so it must be set before `import tensorflow`:
this file imports nothing else, and `experiments` and `benchmarks` import it
first. The entry points of this package and of those two are covered; a program
that imports TensorFlow before `trainer` keeps TensorFlow's own choice.
"""
import os

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
# What the environment said before the default below: None when it was unset.
ONEDNN_FROM_ENVIRONMENT = os.environ.get(ONEDNN_VARIABLE)
os.environ.setdefault(ONEDNN_VARIABLE, "1")
