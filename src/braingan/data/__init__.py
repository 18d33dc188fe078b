"""Data: slice discovery (layouts), decoding (dataset), sampling, demo set, DataModule."""
