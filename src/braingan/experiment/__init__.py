"""The experiment layer: between the entry points (Hydra, argv, printing) and the library.

settings.py  composed config -> datamodule and typed configs (keys = dataclass fields), checked
trainer.py   processes, DDP strategy, CUDA backends, the Trainer and its callbacks
resume.py    which checkpoint a command continues, and whether it may (the continue/resume policy)
command.py   the command line before Hydra composes it (replayed overrides, presets) and the resolvers
run.py       one training run: check, continue or start, fit, end in one line

The library packages (nn/, data/, training/, metrics/, utils/) never import this package.
"""
