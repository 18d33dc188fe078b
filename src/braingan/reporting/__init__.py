"""Reporting helpers of the entry points: TensorBoard reading, figures, tables, environment facts."""
