"""Fakes and a virtual clock for tests of the shells (shipped, so that tests and drills can use them)."""
