"""Pure functions: raw endpoint JSON in, frozen readings out. Every firmware quirk lives here."""
