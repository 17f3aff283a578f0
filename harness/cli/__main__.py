"""`python -m harness.cli ...`: the same as the `harness` command."""

from harness.cli import main

if __name__ == "__main__":  # importing this module (a test, a tool) runs nothing
    main()
