"""Fuzzing helpers and the long-running harness (``python -m tests.fuzz.harness``); no tests here."""
