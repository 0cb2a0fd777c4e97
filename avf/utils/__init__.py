"""Small shared helpers: atomic writes, progress reporting, seeding."""
