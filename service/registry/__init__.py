"""Extension registry: Manifest v2 validation, bundle loading and publisher signatures."""
