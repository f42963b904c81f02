"""Training on Vertex AI: the job submitter and the job files it reads.

`python -m cloud.vertex` turns a job file (`vertex_job_mirrored.yaml`: one machine,
`vertex_job_multiworker.yaml`: several) and its flags into a Vertex AI `CustomJob`
that runs `python -m trainer.task` in the trainer image, and prints it (`--dry_run`)
or creates it. `cloud.job_spec` builds that job as plain data, checked offline; only
the submission itself needs the Vertex AI SDK (the package's `cloud` extra). Nothing
here imports the trainer: the two meet only in the container's arguments and in the
AIP_* variables Vertex AI sets. docs/cloud.md is the step-by-step tutorial.
"""
