"""``python -m relayd``: the same as the ``relayd`` console script."""

from relayd.main import main

main()
