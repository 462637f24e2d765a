"""The Hugging Face Hub side shared by every dataset and model.

* :mod:`.writer` — size-bounded, resumable Parquet shard writer for dataset folders, dataset-card YAML, and
  ``load_dataset`` on built folders or Hub ids.
* :mod:`.publish` — uploading a dataset or model folder (``huggingface_hub``), Hub endpoints and offline use.
"""
