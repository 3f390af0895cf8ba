"""Where teacher bytes come from. A `Source` describes one file (a value: equal when it names the same file);
`Source.open()` gives a `Handle` that reads byte ranges. A `Folder` finds a checkpoint's files and reads its
small ones whole. Local files (`local`), HTTP servers (`session`, `httpfile`) and the Hugging Face Hub (`hub`) plug in
here; the formats above (`wsel.checkpoint`) and the planner never know where bytes live.

This file imports nothing, so that local runs never load an HTTP client.
"""

# Requests in flight for a remote teacher (`--connections`): `make bench-remote` measured the link filled
# from 4 at 20 ms a round trip; 8 leaves room for longer round trips (README, "Performance").
DEFAULT_CONNECTIONS = 8
