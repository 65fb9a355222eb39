"""Task adapters that feed the mmattn core."""
