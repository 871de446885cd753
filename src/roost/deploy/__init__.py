"""Deploys and scale changes carried out through the Machines API (the CLI side, as flyctl)."""
