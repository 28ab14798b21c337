"""Node modules. Each sub-package declares NODES (and CONNECTIONS, FILTERS, AUTH): see engine.plugin."""
