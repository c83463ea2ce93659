"""Outputs on disk and the infotext that travels with them."""
