"""Helpers of the test suite (importable as `helpers`: pyproject.toml puts tests/ on pytest's pythonpath).

runs.py   compose the real config, shrink it to a tiny CPU run, run an entry point as a user does
mri.py    fixture trees with the real OASIS, ADNI and folder naming schemes, from MNI152 slices
slurm.py  the session fixture of a real one-node SLURM cluster (scripts/slurm-local.sh)
"""
