"""`python -m mmattn.eval` = `mmattn-eval`."""

from mmattn.cli.eval import main

if __name__ == "__main__":
    main()
