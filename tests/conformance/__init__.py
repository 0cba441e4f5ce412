"""Conformance runs: external PromQL test scripts against our evaluators."""
