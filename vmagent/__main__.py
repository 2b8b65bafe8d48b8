"""``python -m vmagent``: the same as the ``vmagent`` console script."""

from vmagent.main import main

main()
