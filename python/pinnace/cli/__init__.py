"""The ``pinnace`` command line. One module per command; no logic here."""
