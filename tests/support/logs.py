"""What the engine logged, read back in tests (with pytest's ``caplog``)."""
from __future__ import annotations

import re

RETRYING = re.compile(r"retrying in ([0-9.]+)s")


def retry_waits(caplog) -> list[float]:
    """The waits, in seconds, that the engine chose before each retry (logger ``flowrun.run``,
    level INFO: run the action inside ``caplog.at_level(logging.INFO, logger="flowrun.run")``)."""
    return [float(m.group(1)) for r in caplog.records if (m := RETRYING.search(r.getMessage()))]
