"""The CLI: parses arguments, calls the library, prints, exits with the error's code."""
