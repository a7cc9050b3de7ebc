"""The model under test: specs, safe loading and target adapters."""
