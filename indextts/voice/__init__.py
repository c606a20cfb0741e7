"""``indextts voice build``: raw recordings to an evaluated voice in one command (see :mod:`.build`)."""
