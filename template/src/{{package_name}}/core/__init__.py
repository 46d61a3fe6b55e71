"""The performance core: small modules, one concern each."""
