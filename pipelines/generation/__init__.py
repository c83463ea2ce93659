"""Requests, samplers, noise, prompts and the engine that runs a job."""
