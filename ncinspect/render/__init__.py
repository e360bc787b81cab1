"""Renderers: results -> text for people (rich tables). JSON and CSV live in report.py."""
