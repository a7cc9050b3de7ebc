"""The bundled end-to-end scenario behind ``riskloop demo``."""
