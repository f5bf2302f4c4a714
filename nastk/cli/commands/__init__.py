"""The `nastk` commands, one module each: ``search``, ``report``, ``compare``, ``export``,
``supernet_train``, ``path_filter`` (fit), ``distill``; ``run_record`` opens a finished run for
the ones that read one. :mod:`nastk.cli.main` parses arguments and calls them."""
