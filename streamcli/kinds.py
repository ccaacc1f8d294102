"""Error kinds: what went wrong, as ``Error.kind`` says it; ``exit.py`` maps each to an exit code.

Their own module (re-exported by ``events``), so that ``exit.py`` -- which every command and the
microphone's early start import -- does not pay for defining the event dataclasses.
"""

AUTH = "auth"  # credentials rejected -> 3
CONNECTION = "connection"  # cannot connect / connection lost -> 4
SERVER = "server"  # the server reported an error -> 5
PROTOCOL = "protocol"  # the server broke the protocol -> 5
TIMEOUT = "timeout"  # waited longer than --timeout -> 6
USAGE = "usage"  # the server refused our request as malformed (bad model, config) -> 2
OUTPUT = "output"  # a result could not be written (disk full, directory gone) -> 7
