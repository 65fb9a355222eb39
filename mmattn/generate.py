"""`python -m mmattn.generate` = `mmattn-generate`."""

from mmattn.cli.generate import main

if __name__ == "__main__":
    main()
