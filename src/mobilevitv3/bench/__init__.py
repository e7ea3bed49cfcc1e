"""Measuring models: counting (parameters, official and true MACs), the timing harness, charts, zoo tables."""
