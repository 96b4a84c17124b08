"""The worker app built from the environment, for ``faust -A streams.app:app worker -l info``.

``mhst-tracker worker`` is the usual way to start a worker (it also creates the topics); both
run the app of :func:`streams.tracker.create_app` with the ``MHST_*`` settings.
"""

from mhst_tracker.config import Settings
from streams.tracker import create_app

app = create_app(Settings.from_env())
