"""``python -m eventflo`` is the ``eventflo`` command."""

from eventflo.cli import main

main()
