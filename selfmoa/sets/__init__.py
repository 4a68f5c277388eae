"""Prompt sets of the study: registry, file and hub loaders, contamination checks, judge reference data.

`selfmoa.data` is the public entry point; it re-exports what callers need from here.
"""
