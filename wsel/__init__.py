"""wsel: weight selection from a large pretrained checkpoint into a smaller student, streaming."""

# The one place the version is written (pyproject.toml reads it): a literal, because looking it up
# through importlib.metadata costs every run 40 ms of start-up.
__version__ = "0.1.0"
