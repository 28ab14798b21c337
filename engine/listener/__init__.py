"""The HTTP trigger listener (`flowrun serve`). Importing this package is cheap; the server
modules import Starlette/uvicorn themselves."""
