"""The ``riskloop`` command line (Typer); the only place that renders to the terminal."""
