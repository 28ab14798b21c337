"""A third-party flowrun plugin, as a package outside flowrun would ship one.

It is registered like any other: its dist-info (``../flowrun_testplugin-0.1.dist-info``)
names this module under the ``flowrun.nodes`` entry-point group, so a ``flowrun serve``
with ``tests/plugins`` on its path finds it; in-process tests add it to a registry with
``Registry.add_module``, which is what the entry point leads to.

``TRIGGERS``: ``testplugin.FileFeed``, a pull trigger consuming a JSON-lines file, and
``testplugin.Mailbox``, one that reads through a connection (kind ``testplugin.mailbox``).
``NODES``: none yet (room for a long-running node).
"""
from .feed import FileFeed
from .mailbox import CONNECTION, Mailbox

CONNECTIONS = [CONNECTION]
TRIGGERS = [FileFeed, Mailbox]
NODES: list = []
