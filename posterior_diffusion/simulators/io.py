"""Simulated maps to files: the names the CLI and scripts know for `io.fields`' writer."""

from posterior_diffusion.io.fields import output_format as dataset_format
from posterior_diffusion.io.fields import write_fields as write_dataset_file

__all__ = ["dataset_format", "write_dataset_file"]
