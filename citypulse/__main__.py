"""``python -m citypulse`` runs the command line."""

from citypulse.cli import main

main()
