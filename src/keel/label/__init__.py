"""Labelling: schemas, queues, weak supervision and active learning."""
