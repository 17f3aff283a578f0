"""Built-in quick suites (committed audio) and the script that rendered them."""
