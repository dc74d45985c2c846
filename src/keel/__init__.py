"""Keel: an open-source LLMOps platform."""
