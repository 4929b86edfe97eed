"""Tutor plugin for hastexo_xblock (entry point ``tutor.plugin.v1: hastexo``)."""

__version__ = "0.1.0"
