"""The `roost` command line: flyctl's verbs and flags, one module per command group."""
