"""The `evstore` command line (click). Run `evstore --help` or `python -m cli --help`."""
