"""Helpers shared by the test packages; no test module imports another test module.

- `tests.helpers.trainer_data`: tiny TFRecord data sets written with the project's own
  record writer, and the subprocess runs of `python -m trainer.task`.
- `tests.helpers.image_folders`: image collections in the layouts the Beam job reads.
- `tests.helpers.cloud_jobs`: dry runs of the Vertex AI submitter and what setup.py and cloudbuild.yaml say.
- `tests.helpers.geometry_reference`: the paper's crop geometry done the slow way.
"""
