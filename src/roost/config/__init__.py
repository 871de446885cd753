"""fly.toml: load (with flyctl's legacy patches), validate, and translate to machine configs. Pure."""
