"""CLI as a service (SPEC.md Part 2, "Exec"): ``chronograph exec`` runs a command as a lap, here or on an
``exec-server``; ``chronograph exec-server`` runs allowlisted named commands over HTTP by tier.

Nothing is imported here: the CLI loads ``._commands`` only when one of the two commands is used.
"""
