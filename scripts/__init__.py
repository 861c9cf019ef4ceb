"""Command-line tools beside the pipeline: pull-request report, sweeps."""
