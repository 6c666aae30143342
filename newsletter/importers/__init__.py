"""Importers: bringing outside data in, apart from the readers of the program's own files.

- :mod:`~newsletter.importers.archive`: the network's blog archive (plain-text pages) into
  issue files;
- :mod:`~newsletter.importers.subscribers_csv`: subscribers from and to CSV files;
- :mod:`~newsletter.importers.deliverability`: whether an address's domain receives mail
  (a DNS look-up, for ``--check-dns``).
"""
