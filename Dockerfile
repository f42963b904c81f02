# The trainer image: `python -m trainer.task` on TensorFlow 2.21 with CUDA.
#
#   docker build -t alexnet-trainer .
#   docker run --gpus all alexnet-trainer --data_dir gs://BUCKET/imagenet/tfrecords ...
#
# cloudbuild.yaml builds and pushes it to Artifact Registry; Vertex AI runs it
# with the flags of the job spec (python -m cloud.vertex) and sets AIP_MODEL_DIR etc.
#
# The base is TensorFlow's own GPU image (CUDA, cuDNN, Python 3.11, tensorflow
# 2.21.0 already installed), so pip finds the tensorflow requirement satisfied.
# For a CPU image: --build-arg BASE_IMAGE=tensorflow/tensorflow:2.21.0
ARG BASE_IMAGE=tensorflow/tensorflow:2.21.0-gpu

# Stage 1: build the wheel from setup.py. Only this stage sees the source tree
# and the build tools pip fetches for it.
FROM ${BASE_IMAGE} AS wheel
WORKDIR /src
COPY setup.py ./
COPY cli ./cli
COPY preprocessing ./preprocessing
COPY model ./model
COPY trainer ./trainer
COPY experiments ./experiments
COPY benchmarks ./benchmarks
COPY cloud ./cloud
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Stage 2: the runtime. The wheel is installed non-editable with its declared
# runtime dependencies only (no dev extra); no source tree, tests or data.
FROM ${BASE_IMAGE}
COPY --from=wheel /wheels /tmp/wheels
RUN python -m pip install --no-cache-dir /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels
ENV PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2
# Not the source directory: `python -m trainer.task` must import the installed package.
WORKDIR /home/trainer
ENTRYPOINT ["python", "-m", "trainer.task"]
