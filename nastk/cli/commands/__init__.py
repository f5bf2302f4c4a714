"""The `nastk` commands, one module each, each with its command-line handler ``run(args,
console) -> exit status`` beside what the command does: ``search``, ``list_plugins``
(`nastk list`), ``report``, ``compare``, ``dashboard``, ``supernet_train``, ``path_filter`` (fit),
``distill``, ``export``, ``recipe``, ``study``. :mod:`nastk.cli.parser` declares their
arguments and :mod:`nastk.cli.main` calls them."""
