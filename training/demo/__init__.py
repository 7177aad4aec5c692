"""Demo data sets composed from real data that ships inside packages (no network)."""
