"""``python -m musicpairs`` runs the command line."""

from musicpairs.cli import main

main()
