"""The paper's evaluations, one module each. Importing this package registers them."""

from protocols import mvtec  # noqa: F401
