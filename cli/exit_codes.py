"""The exit codes of every entry point, defined once.

"""
EXIT_OK = 0
EXIT_FAILED = 1  # the job ran and failed (a Beam job over its reject limit, a crash)
EXIT_USAGE = 2  # a user mistake in the flags or environment: one line on stderr
EXIT_DIVERGED = 3  # the training loss became NaN/Inf; the last good checkpoint is kept
EXIT_DATA = 4  # a corrupt, truncated or undecodable input shard or record: one line naming it
EXIT_PREEMPTED = 143  # 128 + SIGTERM: what a shell reports for a process ended by SIGTERM
