"""System adapters, one package or module per system; `base` holds the contract and registry."""
