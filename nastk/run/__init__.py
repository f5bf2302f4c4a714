"""A run: the search loop, its storage, the run folder's layout, identity, lock and lifecycle."""
