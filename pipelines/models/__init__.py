"""Discovering, loading, converting and owning model weights."""
