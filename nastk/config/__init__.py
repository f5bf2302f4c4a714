"""The configs a user writes (schemas) and the one place that builds live objects from them."""
