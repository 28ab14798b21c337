"""``flowrun test``: unit tests for flows, written beside them as ``*.test.yaml``.

    files.py      test files -> validated TestFile (every problem at its file:line:column)
    runner.py     one real run per test: mocks at the node boundary, expectations checked
    network.py    the guard that blocks the network and names the action that tried
    cassettes.py  record vendor calls at the HTTP transports, redacted; replay them offline
    junit.py      results as JUnit XML for CI
"""
