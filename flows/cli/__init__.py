"""The ``plumbline`` command line: one module per command group."""
