"""Planning deploys and scale changes: which machines to create, update, destroy. Pure."""
