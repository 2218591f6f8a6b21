"""``python -m chaosmesh_qa`` is the ``chaosmesh-qa`` command."""

from chaosmesh_qa.cli import main

main()
