"""The command-line front end: parses, calls the library, renders. Only this package prints."""
