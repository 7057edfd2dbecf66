"""The binaries' user errors: a problem the person running them fixes, not a bug.

    raise errors.UserError("config.strength: -1.0 is out of range; expected λ ≥ 0")

A bad config key or value, a missing config or architecture file, an
unwritable --workdir, retraining before the search finished, process flags
that do not fit together or the engine, a rerun that does not match the run it
resumes. `figs-search` and `figs-retrain` print the message (what is wrong and
what to do) in at most three lines on stderr and exit with status 2; the
traceback only with `--verbosity=1` (figs_tf/train/flags.py). Called as a
library (`search.run(...)`) they are ordinary exceptions: `UserError` is a
ValueError, `MissingFileError` also a FileNotFoundError.
"""

EXIT_STATUS = 2  # as absl (and argparse) exit on a bad flag


class UserError(ValueError):
    """A problem with the command line, the config or the workdir; the message names the fix."""


class MissingFileError(UserError, FileNotFoundError):
    """A file the run needs (an architecture JSON) does not exist; the message says what makes it."""
